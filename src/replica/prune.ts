// Prune: deletes the recovery points retention let go, then removes what no remaining recovery point
// reaches: packs with no live blob are deleted, packs that are mostly garbage are repacked, and packs
// no index segment names (left by an interrupted backup) are deleted once they are old enough.
//
// The caller holds the EXCLUSIVE pool lock. Crash safety, step by step (a crash anywhere leaves a pool
// that restores every remaining recovery point, and the next prune finishes the work):
//   1. everything is read and decided first; an unreadable index segment, manifest or tree stops the
//      prune before anything is changed (reachability would be unknown);
//   2. the manifests retention removes are deleted (their blobs become garbage, nothing else changes);
//   3. live blobs of the packs to repack are copied, still sealed and verified, into new packs (each
//      written whole by the Packer);
//   4. one new index segment lists the new packs and the kept packs of every segment that had a pack
//      deleted or repacked, and `supersedes` those segments (catalog sync and check then ignore them);
//   5. only then are the old packs deleted, then the superseded segments, then old unreferenced packs.
// The caller's catalog learns of each step before the pool changes (onPlanned, beforeDeletions), so a
// kill never leaves it recording an object that was deliberately deleted.
// Packs named only by superseded segments (a crash between 4 and 5) are deleted by the next prune.
import { BlobIdSet } from '../catalog/blob-id-set.js';
import type { BlobLocation } from '../catalog/catalog.js';
import { crashPoint } from '../crash.js';
import { StrataError, throwIfAborted } from '../errors.js';
import { listAll } from '../store/object-store.js';
import { decodeBlob } from './blob-codec.js';
import { BlobReader } from './blob-reader.js';
import type { IndexedPack, IndexSegment } from './index-segment.js';
import { Packer } from './packer.js';
import { INDEX_PREFIX, PACKS_PREFIX, SNAPSHOTS_PREFIX, packKey, type Pool } from './pool.js';

export interface PruneProgress {
  phase: 'reading index' | 'walking recovery points' | 'repacking' | 'deleting';
  done: number;
  total: number;
}

export interface PrunePoolOptions {
  /** Manifest ids to delete first (retention's answer). Ids not in the pool are ignored. */
  deleteManifests: readonly string[];
  /** Decide and report, change nothing. */
  dryRun?: boolean;
  signal?: AbortSignal;
  /** A pack is repacked when its dead bytes are more than this fraction of its blob bytes. Default 0.5. */
  repackThreshold?: number;
  /**
   * Whether an unreferenced pack (named by no index segment) is old enough to be garbage rather than
   * a pack of a backup in progress. Called once per such pack.
   */
  isOldUnreferenced: (key: string) => Promise<boolean>;
  onProgress?: (p: PruneProgress) => void;
  /**
   * Called once everything is decided and before the first change (never on a dry run), with every
   * object the prune may delete: the caller records it, so that a crash after local deletions still
   * lets their other copies (the vault) learn of them. Some of these may survive (a damaged pack is
   * not repacked); the caller checks which are gone.
   */
  onPlanned?: (planned: PlannedDeletions) => Promise<void> | void;
  /**
   * Called once the new index segment is durable (or none was needed) and before any pack or index
   * segment is deleted: the caller brings its catalog in line, so that it never records a segment that
   * is about to go (a kill during the deletions would otherwise leave it naming a missing segment).
   */
  beforeDeletions?: () => Promise<void> | void;
}

/** What a prune is about to delete (hex ids; manifests as recovery point ids). */
export interface PlannedDeletions {
  manifests: string[];
  packs: string[];
  indexSegments: string[];
}

export interface PruneReport {
  dryRun: boolean;
  /** Recovery points (manifest ids) deleted. */
  manifestsDeleted: string[];
  /** Packs deleted because no blob in them is live. */
  packsDeleted: string[];
  /** Packs whose live blobs were copied into new packs, then deleted. */
  packsRepacked: string[];
  /** Packs named by no index segment (or only by superseded ones) that were deleted. */
  unreferencedPacksDeleted: string[];
  /** Unreferenced packs kept because they are recent (a backup may be writing them). */
  unreferencedPacksKept: number;
  packsWritten: string[];
  indexSegmentsDeleted: string[];
  indexSegmentsWritten: string[];
  liveBlobs: number;
  /** Blobs dropped (in deleted or repacked packs). */
  deadBlobs: number;
  /** Bytes of the objects deleted. */
  bytesDeleted: number;
  /** Bytes of new packs and index segments written. */
  bytesWritten: number;
  /** bytesDeleted − bytesWritten: what the pool shrank by (an estimate with --dry-run). */
  bytesFreed: number;
  /** Packs left alone because a live blob in them failed verification (run check). */
  damagedPacks: string[];
}

interface PackInfo {
  id: string;
  segment: string;
  pack: IndexedPack;
}

/** See the file comment. Throws StrataError STRATA_PRUNE_UNSAFE, with nothing changed, if the pool cannot be read fully. */
export async function prunePool(pool: Pool, options: PrunePoolOptions): Promise<PruneReport> {
  const { signal } = options;
  const threshold = options.repackThreshold ?? 0.5;
  const progress = (phase: PruneProgress['phase'], done: number, total: number) => options.onProgress?.({ phase, done, total });
  const report: PruneReport = {
    dryRun: options.dryRun ?? false,
    manifestsDeleted: [],
    packsDeleted: [],
    packsRepacked: [],
    unreferencedPacksDeleted: [],
    unreferencedPacksKept: 0,
    packsWritten: [],
    indexSegmentsDeleted: [],
    indexSegmentsWritten: [],
    liveBlobs: 0,
    deadBlobs: 0,
    bytesDeleted: 0,
    bytesWritten: 0,
    bytesFreed: 0,
    damagedPacks: [],
  };
  const unsafe = (what: string, err: unknown) =>
    new StrataError('STRATA_PRUNE_UNSAFE', `prune stopped before changing anything: ${what}: ${(err as Error).message}; run 'strata check' (and 'strata repair')`, {
      kind: 'failed',
      cause: err,
    });

  // 1a. The index, from the pool itself.
  const segmentSizes = new Map((await listAll(pool.store, INDEX_PREFIX, signal ? { signal } : {})).map((o) => [o.key.slice(INDEX_PREFIX.length), o.size]));
  const segments = new Map<string, IndexSegment>();
  let n = 0;
  for (const id of await pool.listIndexIds()) {
    throwIfAborted(signal);
    progress('reading index', n++, segmentSizes.size);
    try {
      segments.set(id, await pool.readIndex(id));
    } catch (err) {
      throw unsafe(`index segment ${id.slice(0, 12)} cannot be read`, err);
    }
  }
  const superseded = new Set<string>();
  for (const seg of segments.values()) for (const s of seg.supersedes) superseded.add(s.toString('hex'));
  const packs = new Map<string, PackInfo>();
  const locations = new Map<string, BlobLocation>();
  for (const [segment, seg] of segments) {
    if (superseded.has(segment)) continue;
    for (const pack of seg.packs) {
      const id = pack.id.toString('hex');
      if (packs.has(id)) continue;
      packs.set(id, { id, segment, pack });
      for (const e of pack.entries) {
        locations.set(e.id.toString('hex'), { id: e.id, type: e.type, packId: id, offset: e.offset, length: e.length, rawLength: e.rawLength, compression: e.compression });
      }
    }
  }

  // 1b. What the remaining recovery points reach.
  const manifestSizes = new Map((await listAll(pool.store, SNAPSHOTS_PREFIX, signal ? { signal } : {})).map((o) => [o.key.slice(SNAPSHOTS_PREFIX.length), o.size]));
  const toDelete = new Set(options.deleteManifests.filter((id) => manifestSizes.has(id)));
  const remaining = (await pool.listManifestIds()).filter((id) => !toDelete.has(id));
  const reader = new BlobReader(pool.store, pool.keys, (id) => locations.get(id.toString('hex')));
  const live = new BlobIdSet(locations.size + 1024);
  const seenTrees = new Set<string>();
  n = 0;
  for (const id of remaining) {
    throwIfAborted(signal);
    progress('walking recovery points', n++, remaining.length);
    let root: string;
    try {
      root = (await pool.readManifest(id)).tree;
    } catch (err) {
      throw unsafe(`recovery point ${id.slice(0, 12)} cannot be read`, err);
    }
    const stack = [root];
    while (stack.length > 0) {
      const treeId = stack.pop()!;
      if (seenTrees.has(treeId)) continue;
      seenTrees.add(treeId);
      live.add(Buffer.from(treeId, 'hex'));
      let tree;
      try {
        tree = await reader.tree(treeId, signal);
      } catch (err) {
        throw unsafe(`a tree of recovery point ${id.slice(0, 12)} cannot be read`, err);
      }
      for (const node of tree.nodes) {
        if (node.type === 'dir' && node.subtree) stack.push(node.subtree);
        else if (node.type === 'file') for (const c of node.content ?? []) live.add(Buffer.from(c, 'hex'));
      }
    }
  }

  // 1c. Decide, pack by pack.
  const toRemove: PackInfo[] = [];
  const toRepack: PackInfo[] = [];
  const affected = new Set<string>();
  for (const info of packs.values()) {
    let liveBytes = 0;
    let deadBytes = 0;
    let liveCount = 0;
    for (const e of info.pack.entries) {
      if (live.has(e.id)) {
        liveBytes += e.length;
        liveCount++;
      } else deadBytes += e.length;
    }
    if (liveCount === 0) {
      toRemove.push(info);
      affected.add(info.segment);
      report.deadBlobs += info.pack.entries.length;
    } else if (deadBytes > threshold * (liveBytes + deadBytes)) {
      toRepack.push(info);
      affected.add(info.segment);
      report.deadBlobs += info.pack.entries.length - liveCount;
    }
  }
  report.liveBlobs = live.size;
  const unreferenced: { key: string; size: number }[] = [];
  const indexedAnywhere = new Set<string>();
  for (const seg of segments.values()) for (const p of seg.packs) indexedAnywhere.add(p.id.toString('hex'));
  for (const o of await listAll(pool.store, PACKS_PREFIX, signal ? { signal } : {})) {
    const id = o.key.split('/').pop()!;
    if (packs.has(id)) continue;
    // Named only by superseded segments: garbage from a prune that stopped half way. Named by none: old enough?
    if (indexedAnywhere.has(id) || (await options.isOldUnreferenced(o.key))) unreferenced.push(o);
    else report.unreferencedPacksKept++;
  }
  const leftoverSegments = [...segments.keys()].filter((id) => superseded.has(id));

  report.manifestsDeleted = [...toDelete];
  report.packsDeleted = toRemove.map((p) => p.id);
  report.packsRepacked = toRepack.map((p) => p.id);
  report.unreferencedPacksDeleted = unreferenced.map((o) => o.key.split('/').pop()!);
  report.indexSegmentsDeleted = [...affected, ...leftoverSegments];
  report.bytesDeleted =
    [...toDelete].reduce((s, id) => s + manifestSizes.get(id)!, 0) +
    [...toRemove, ...toRepack].reduce((s, p) => s + p.pack.size, 0) +
    unreferenced.reduce((s, o) => s + o.size, 0) +
    report.indexSegmentsDeleted.reduce((s, id) => s + (segmentSizes.get(id) ?? 0), 0);
  if (report.dryRun) {
    // Estimate: the live blobs of repacked packs are written again.
    report.bytesWritten = toRepack.reduce((s, p) => s + p.pack.entries.filter((e) => live.has(e.id)).reduce((t, e) => t + e.length, 0), 0);
    report.bytesFreed = report.bytesDeleted - report.bytesWritten;
    return report;
  }

  await options.onPlanned?.({ manifests: report.manifestsDeleted, packs: [...report.packsDeleted, ...report.packsRepacked, ...report.unreferencedPacksDeleted], indexSegments: report.indexSegmentsDeleted });

  // 2. Manifests.
  for (const id of toDelete) {
    await pool.deleteManifest(id);
    crashPoint('prune-manifest-deleted');
  }
  crashPoint('prune-manifests-deleted');

  // 3. Repack: live blobs are copied sealed (a blob is sealed under its own id, not its pack), after
  // verification, so a damaged blob is never spread; a pack holding one is left as it is.
  const packer = new Packer(pool.store, { encKey: pool.keys.encKey, targetBytes: pool.description.packTargetBytes, ...(signal ? { signal } : {}) });
  const copied = new Set<string>();
  n = 0;
  try {
    for (const info of toRepack) {
      throwIfAborted(signal);
      progress('repacking', n++, toRepack.length);
      const data = await pool.store.get(packKey(info.id), signal ? { signal } : {});
      const keep: { e: (typeof info.pack.entries)[number]; sealed: Buffer }[] = [];
      let damaged = false;
      for (const e of info.pack.entries) {
        if (!live.has(e.id) || copied.has(e.id.toString('hex'))) continue;
        const sealed = data.subarray(e.offset, e.offset + e.length);
        try {
          decodeBlob(pool.keys, { id: e.id, compression: e.compression, rawLength: e.rawLength }, sealed, { verifyId: true });
        } catch {
          damaged = true;
          break;
        }
        keep.push({ e, sealed: Buffer.from(sealed) });
      }
      if (damaged || data.length !== info.pack.size) {
        report.damagedPacks.push(info.id);
        continue;
      }
      for (const { e, sealed } of keep) {
        copied.add(e.id.toString('hex'));
        await packer.add(e.type, e.id, sealed, e.rawLength, e.compression);
      }
    }
    const written = await packer.flush();
    crashPoint('prune-repacked');
    report.packsWritten = written.map((p) => p.id.toString('hex'));
    report.bytesWritten += packer.bytesWritten;
    // 4. The new index segment, superseding every segment that loses a pack.
    const damaged = new Set(report.damagedPacks);
    report.packsRepacked = report.packsRepacked.filter((id) => !damaged.has(id));
    if (affected.size > 0) {
      const kept: IndexedPack[] = [];
      for (const info of packs.values()) {
        if (!affected.has(info.segment)) continue;
        if (toRemove.includes(info) || (toRepack.includes(info) && !damaged.has(info.id))) continue;
        kept.push(info.pack);
      }
      const segment: IndexSegment = { supersedes: [...affected].map((id) => Buffer.from(id, 'hex')), packs: [...kept, ...written] };
      const newId = await pool.writeIndex(segment);
      crashPoint('prune-index-written');
      report.indexSegmentsWritten.push(newId);
      report.bytesWritten += (await pool.store.stat(`${INDEX_PREFIX}${newId}`)).size;
    }
  } catch (err) {
    await packer.abandon();
    throw err;
  }

  await options.beforeDeletions?.();

  // 5. Deletions, oldest references last.
  const gone = [...toRemove.map((p) => p.id), ...report.packsRepacked, ...report.unreferencedPacksDeleted];
  n = 0;
  for (const id of gone) {
    progress('deleting', n++, gone.length);
    await pool.store.delete(packKey(id));
    crashPoint('prune-pack-deleted');
  }
  for (const id of report.indexSegmentsDeleted) {
    await pool.store.delete(`${INDEX_PREFIX}${id}`);
    crashPoint('prune-index-deleted');
  }
  crashPoint('prune-pool-done');
  report.bytesDeleted -= report.damagedPacks.reduce((s, id) => s + (packs.get(id)?.pack.size ?? 0), 0);
  report.bytesFreed = report.bytesDeleted - report.bytesWritten;
  return report;
}
