// check: every manifest → tree → blob resolves to a pack that exists with the indexed size; with
// readData, every pack is read, its header matched against the index, and every blob decrypted,
// authenticated and its id recomputed. Damage is reported per pack with the files it affects.
//
// With readData, packs are read in order, a few ahead, and verified by worker threads (decryption,
// decompression and keyed hashing are the cost; from a directory pool the workers read the packs too); the workers hand back the trees they decoded, so the
// walk of the recovery points does not read them again.
import type { BlobLocation } from '../catalog/catalog.js';
import { throwIfAborted } from '../errors.js';
import { DirStore } from '../store/dir-store.js';
import { listAll } from '../store/object-store.js';
import { BlobReader } from './blob-reader.js';
import type { RawIndexedPack } from './index-segment.js';
import { validatedEntries } from './pack.js';
import { mapLimit } from './pipeline/limit.js';
import { transferable } from './pipeline/protocol.js';
import type { CheckPackResult, CheckPackTask } from './pipeline/tasks.js';
import type { SpareWorkers, WorkerPool } from './pipeline/worker-pool.js';
import { defaultWorkerCount, startWorkersEarly } from './pipeline/workers.js';
import { PACKS_PREFIX, packKey, type Pool } from './pool.js';
import { decodeTree, type Tree } from './tree.js';

export interface CheckProblem {
  /** pack | index | manifest | tree | blob */
  kind: string;
  object: string;
  problem: string;
  /** "recovery point id: path" of files affected (at most 20 listed, see `affectedCount`). */
  affected: string[];
  affectedCount: number;
}

export interface CheckReport {
  ok: boolean;
  recoveryPoints: number;
  packs: number;
  blobs: number;
  bytesRead: number;
  problems: CheckProblem[];
  /** Not errors: packs no index names (an interrupted backup); prune removes them. */
  unreferencedPacks: string[];
}

export interface CheckOptions {
  readData?: boolean;
  signal?: AbortSignal;
  /** Worker threads that verify packs with readData (default: one per core; 0: in-process). */
  workers?: number;
  /** Workers started before the keys were known (AgentContext.prefetchWorkers): used if they fit `workers`. */
  spareWorkers?: SpareWorkers | null;
  onProgress?: (p: { phase: string; done: number; total: number; bytes: number }) => void;
}

const MAX_AFFECTED = 20;
/** Decoded trees kept from the data pass for the walk (beyond that, the walk reads them again). */
const MAX_CACHED_TREES = 50_000;

export async function checkPool(pool: Pool, options: CheckOptions = {}): Promise<CheckReport> {
  // With readData the workers boot while the index is read.
  const workers = options.readData
    ? startWorkersEarly(options.workers ?? defaultWorkerCount(), () => ({ encKey: pool.keys.encKey, idKey: pool.keys.idKey }), options.signal, options.spareWorkers)
    : null;
  if (!workers) void options.spareWorkers?.close(); // not needed without readData
  try {
    return await checkWith(pool, options, workers?.ready ?? null);
  } finally {
    await workers?.close();
  }
}

async function checkWith(pool: Pool, options: CheckOptions, workersStarted: Promise<WorkerPool> | null): Promise<CheckReport> {
  const signal = options.signal;
  const report: CheckReport = { ok: true, recoveryPoints: 0, packs: 0, blobs: 0, bytesRead: 0, problems: [], unreferencedPacks: [] };
  const problemFor = new Map<string, CheckProblem>();
  const addProblem = (kind: string, object: string, problem: string): CheckProblem => {
    const key = `${kind}:${object}`;
    let p = problemFor.get(key);
    if (!p) {
      p = { kind, object, problem, affected: [], affectedCount: 0 };
      problemFor.set(key, p);
      report.problems.push(p);
    }
    return p;
  };

  // 1. The index, from the pool itself (never the catalog), read while the packs are listed. Each
  // pack's entries are only validated here; they are decoded (into `blobs`) once the workers have
  // their first packs, so that the workers do not wait for it.
  const [indexIds, listedPacks] = await Promise.all([pool.listIndexIds(), listAll(pool.store, PACKS_PREFIX)]);
  const segments = new Map<string, RawIndexedPack[]>();
  const superseded = new Set<string>();
  const read = await mapLimit(indexIds, Math.max(2, Math.min(pool.store.capabilities.connections, 16)), async (id) => {
    try {
      return await pool.readIndexRaw(id);
    } catch (err) {
      throwIfAborted(signal);
      return err as Error;
    }
  });
  indexIds.forEach((id, i) => {
    const seg = read[i]!;
    if (seg instanceof Error) {
      addProblem('index', `index/${id}`, seg.message);
      return;
    }
    segments.set(id, seg.packs);
    for (const s of seg.supersedes) superseded.add(s.toString('hex'));
  });
  const packs = new Map<string, RawIndexedPack>();
  for (const [id, segPacks] of segments) {
    if (superseded.has(id)) continue;
    for (const p of segPacks) packs.set(p.id.toString('hex'), p);
  }
  report.packs = packs.size;
  const blobs = new Map<string, BlobLocation>();
  const indexBlobs = (): void => {
    for (const [packId, p] of packs) {
      for (const e of validatedEntries(p.entries)) {
        blobs.set(e.id.toString('hex'), { id: e.id, type: e.type, packId, offset: e.offset, length: e.length, rawLength: e.rawLength, compression: e.compression });
      }
    }
    report.blobs = blobs.size;
  };

  // 2. Packs present with the indexed size.
  const present = new Map(listedPacks.map((o) => [o.key.split('/').pop()!, o.size]));
  const badPacks = new Set<string>();
  /** Blobs that failed verification inside a pack whose header is sound. */
  const badBlobs = new Set<string>();
  const isBad = (blobIdHex: string, packId: string) => badPacks.has(packId) || badBlobs.has(blobIdHex);
  for (const [packId, p] of packs) {
    const size = present.get(packId);
    if (size === undefined) {
      addProblem('pack', packId, 'missing');
      badPacks.add(packId);
    } else if (size !== p.size) {
      addProblem('pack', packId, `size ${size}, the index says ${p.size} (truncated or replaced)`);
      badPacks.add(packId);
    }
  }
  for (const packId of present.keys()) if (!packs.has(packId)) report.unreferencedPacks.push(packId);

  // 3. With --read-data: every pack read whole and verified.
  const trees = new Map<string, Tree>();
  const cacheTrees = (result: CheckPackResult): void => {
    for (const t of result.trees) {
      if (trees.size >= MAX_CACHED_TREES) break;
      try {
        trees.set(t.id, decodeTree(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength), `tree ${t.id.slice(0, 16)}`));
      } catch {
        // Read again (and reported) by the walk below.
      }
    }
  };
  if (!workersStarted) indexBlobs();
  else {
    const workers = await workersStarted;
    try {
      const list = [...packs].filter(([packId]) => !badPacks.has(packId));
      const ahead = Math.max(2, Math.min(pool.store.capabilities.connections, workers.size + 1));
      let done = packs.size - list.length;
      // Results are applied in pack order, whatever order the workers finish in.
      const verifying = mapLimit(list, ahead, async ([packId, p]): Promise<{ result: CheckPackResult } | { error: string }> => {
        throwIfAborted(signal);
        const key = packKey(packId);
        // A copy of the entries of its own: a view would be cloned with the whole segment.
        const task: CheckPackTask = { packId, entries: new Uint8Array(p.entries) };
        let transfer: ArrayBuffer[] = [];
        if (pool.store instanceof DirStore) {
          // A directory pool: the worker reads the pack itself.
          task.file = pool.store.path(key);
          task.key = key;
        } else {
          let data: Buffer;
          try {
            data = await pool.store.get(key, signal ? { signal } : {});
          } catch (err) {
            throwIfAborted(signal);
            return { error: `cannot be read: ${(err as Error).message}` };
          }
          const pack = transferable(data);
          task.data = pack.data;
          transfer = pack.transfer;
        }
        const result = await workers.run<CheckPackResult>(workers.leastBusy(), 'check-pack', task, { transfer });
        report.bytesRead += result.read;
        // Decoded now, while the workers verify the next packs (the main thread is otherwise idle).
        if (!result.whole) cacheTrees(result);
        options.onProgress?.({ phase: 'reading packs', done: ++done, total: packs.size, bytes: report.bytesRead });
        return { result };
      });
      verifying.catch(() => {}); // awaited below
      // The first packs are on their way to the workers: the index is decoded meanwhile.
      indexBlobs();
      const results = await verifying;
      list.forEach(([packId], i) => {
        const r = results[i]!;
        if ('error' in r) {
          addProblem('pack', packId, r.error);
          badPacks.add(packId);
        } else if (r.result.whole) {
          addProblem('pack', packId, r.result.whole);
          badPacks.add(packId);
        } else {
          if (r.result.blobs.length > 0) {
            addProblem('pack', packId, `${r.result.blobs.length} damaged blob(s): ${r.result.blobs[0]!.message}`);
            for (const b of r.result.blobs) badBlobs.add(b.id);
          }
        }
      });
    } finally {
      await workers.close();
    }
  }

  // 4. Every recovery point's trees and blobs resolve; damage is mapped to the files it affects.
  const reader = new BlobReader(pool.store, pool.keys, (id) => blobs.get(id.toString('hex')));
  const manifestIds = await pool.listManifestIds();
  report.recoveryPoints = manifestIds.length;
  const note = (p: CheckProblem, where: string) => {
    p.affectedCount++;
    if (p.affected.length < MAX_AFFECTED) p.affected.push(where);
  };
  // Subtrees found whole (every tree and blob under them indexed and undamaged): shared by most
  // recovery points, they are walked once, not once per point. A subtree with a problem is walked in
  // every point that holds it, so each point's affected paths are named.
  const whole = new Set<string>();
  let mDone = 0;
  for (const mid of manifestIds) {
    throwIfAborted(signal);
    options.onProgress?.({ phase: 'checking recovery points', done: mDone++, total: manifestIds.length, bytes: report.bytesRead });
    let tree: string;
    try {
      tree = (await pool.readManifest(mid)).tree;
    } catch (err) {
      addProblem('manifest', `snapshots/${mid}`, (err as Error).message);
      continue;
    }
    const rp = mid.slice(0, 12);
    /** Walks a subtree, noting its problems; true when it has none. */
    const walk = async (treeId: string, prefix: string): Promise<boolean> => {
      if (whole.has(treeId)) return true;
      const loc = blobs.get(treeId);
      if (!loc) {
        note(addProblem('tree', treeId, 'not in any index'), `${rp}: ${prefix || '/'} (whole directory)`);
        return false;
      }
      if (isBad(treeId, loc.packId)) {
        note(addProblem('pack', loc.packId, 'damaged'), `${rp}: ${prefix || '/'} (whole directory)`);
        return false;
      }
      let nodes;
      try {
        nodes = (trees.get(treeId) ?? (await reader.tree(treeId, signal))).nodes;
      } catch (err) {
        const p = addProblem('pack', loc.packId, `tree ${treeId.slice(0, 16)}: ${(err as Error).message}`);
        badPacks.add(loc.packId);
        note(p, `${rp}: ${prefix || '/'} (whole directory)`);
        return false;
      }
      let clean = true;
      for (const n of nodes) {
        const rel = prefix ? `${prefix}/${n.name}` : n.name;
        if (n.type === 'dir') clean = (await walk(n.subtree!, rel)) && clean;
        else if (n.type === 'file') {
          for (const c of n.content ?? []) {
            const b = blobs.get(c);
            if (!b) {
              note(addProblem('blob', c, 'not in any index'), `${rp}: ${rel}`);
              clean = false;
              break;
            }
            if (isBad(c, b.packId)) {
              note(addProblem('pack', b.packId, 'damaged'), `${rp}: ${rel}`);
              clean = false;
              break;
            }
          }
        }
      }
      if (clean) whole.add(treeId);
      return clean;
    };
    await walk(tree, '');
  }
  report.ok = report.problems.length === 0;
  return report;
}
