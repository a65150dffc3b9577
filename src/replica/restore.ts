// Restore of a recovery point, or one item of it, into a target directory. Never overwrites silently,
// never writes outside the target, reads each pack once and in order.
//
// The main thread plans (trees read in parallel, conflicts decided before any write) and hands the
// packs, in order, a few ahead, to worker threads; a worker reads the pack (from a directory pool
// itself, else the main thread reads it and transfers it), authenticates, decompresses and verifies
// its blobs and writes them into the files: a file held in one blob (most files) is created,
// written, given its metadata and closed in one go; other files are pre-sized first and written at
// their offsets. Files are written into a private staging directory and renamed into place once
// complete, in batches while later packs are restored: a file is never seen at its name half written.
// Directories are made meanwhile, and get their metadata last. Every write under the target goes
// through directory descriptors (restore-target.ts):
// a directory swapped for a symlink while the restore runs cannot divert a write out of the target.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { BlobLocation } from '../catalog/catalog.js';
import { crashPoint } from '../crash.js';
import { StrataError, throwIfAborted } from '../errors.js';
import { DirStore } from '../store/dir-store.js';
import type { BlobReader } from './blob-reader.js';
import { mapLimit } from './pipeline/limit.js';
import { transferable } from './pipeline/protocol.js';
import type { BlobUse, FileOp, Meta, ReadBlobsResult, ReadBlobsTask, RestorePackTask, RestoreResultPart } from './pipeline/tasks.js';
import type { SpareWorkers, WorkerPool } from './pipeline/worker-pool.js';
import { defaultWorkerCount, startWorkersEarly } from './pipeline/workers.js';
import { packKey } from './pool.js';
import { createTarget, RestoreTarget, STAGING_PREFIX } from './restore-target.js';
import { decodeTree, isSafeName, type Tree, type TreeNode } from './tree.js';

export type ConflictPolicy = 'error' | 'copy' | 'skip' | 'overwrite';

export interface RestoreOptions {
  /** Path inside the recovery point ("a/b/c.txt"); the item is restored as `<target>/<basename>`. */
  item?: string;
  target: string;
  onConflict: ConflictPolicy;
  signal?: AbortSignal;
  onProgress?: (p: RestoreProgress) => void;
  /** chown to the stored uid/gid (default: only when running as root). */
  restoreOwnership?: boolean;
  /** Worker threads that decode blobs and write files (default: one per core; 0: in-process). */
  workers?: number;
  /** Workers started before the keys were known (AgentContext.prefetchWorkers): used if they fit `workers`. */
  spareWorkers?: SpareWorkers | null;
}

export interface RestoreProgress {
  files: number;
  totalFiles: number;
  bytes: number;
  totalBytes: number;
}

export interface RestoreResult {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  bytes: number;
  skipped: string[];
  renamed: { from: string; to: string }[];
  warnings: string[];
}

interface PlannedEntry {
  rel: string; // path relative to target, '' for the target itself
  node: TreeNode;
}

interface FileJob {
  rel: string;
  node: TreeNode;
  /** Where content is written first (the staging directory, entry `staged`), renamed to `rel` at the end. */
  tmp: string;
  staged: number;
  /** The final path, for messages. */
  final: string;
}

/** Tree reads, lstat, mkdir and the like in flight at once. */
const FS_CONCURRENCY = 32;
/** File operations (create, rename, metadata) per worker task. */
const OPS_PER_TASK = 512;

export async function restoreTree(reader: BlobReader, rootTree: string, options: RestoreOptions): Promise<RestoreResult> {
  // Every write under the target goes through its directory descriptors (restore-target.ts), closed here.
  const held: { rt: RestoreTarget | null; dirsMade: Promise<void> | null } = { rt: null, dirsMade: null };
  // The workers boot while the plan is made.
  const workers = startWorkersEarly(options.workers ?? defaultWorkerCount(), () => ({ encKey: reader.keys.encKey, idKey: reader.keys.idKey }), options.signal, options.spareWorkers);
  try {
    return await restoreTreeInto(reader, rootTree, options, held, workers.ready);
  } finally {
    await workers.close();
    await held.dirsMade?.catch(() => {}); // (a restore that failed meanwhile: done with the target first)
    await held.rt?.close();
  }
}

async function restoreTreeInto(
  reader: BlobReader,
  rootTree: string,
  options: RestoreOptions,
  held: { rt: RestoreTarget | null; dirsMade: Promise<void> | null },
  workersStarted: Promise<WorkerPool>,
): Promise<RestoreResult> {
  const result: RestoreResult = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, bytes: 0, skipped: [], renamed: [], warnings: [] };
  const signal = options.signal;
  const ownership = options.restoreOwnership ?? process.getuid?.() === 0;

  // 1. Find what to restore, and where each file's content is.
  let entries: PlannedEntry[];
  const located = new Map<TreeNode, BlobLocation[] | Error>();
  if (options.item && options.item !== '/' && options.item !== '.') {
    const parts = options.item.split('/').filter((p) => p.length > 0);
    if (parts.some((p) => !isSafeName(p))) {
      throw new StrataError('STRATA_ITEM_INVALID', `--item ${JSON.stringify(options.item)} must be a path inside the recovery point, without "." or ".."`, { kind: 'usage' });
    }
    let treeId = rootTree;
    let node: TreeNode | undefined;
    for (let i = 0; i < parts.length; i++) {
      const tree = await reader.tree(treeId, signal);
      node = tree.nodes.find((n) => n.name === parts[i]);
      if (!node) throw new StrataError('STRATA_ITEM_NOT_FOUND', `${options.item} is not in this recovery point`, { kind: 'usage' });
      if (i < parts.length - 1) {
        if (node.type !== 'dir') throw new StrataError('STRATA_ITEM_NOT_FOUND', `${parts.slice(0, i + 1).join('/')} is not a directory in this recovery point`, { kind: 'usage' });
        treeId = node.subtree!;
      }
    }
    entries = collect(reader, [node!], await readTrees(reader, [node!], workersStarted, signal), located);
  } else {
    const root = await reader.tree(rootTree, signal);
    entries = collect(reader, root.nodes, await readTrees(reader, root.nodes, workersStarted, signal), located);
  }

  // 2. The target: create it if needed, and work under its real path.
  await createTarget(options.target);
  const target = await fs.realpath(options.target);
  // An empty target has nothing to conflict with: no need to look at every path.
  const present = await fs.readdir(target);
  const targetEmpty = present.length === 0;
  // A staging directory left by a restore that was killed (any other end removes it): said, not
  // removed (another restore into this target could be running).
  for (const name of present.filter((n) => n.startsWith(STAGING_PREFIX))) {
    result.warnings.push(`${path.join(target, name)} was left by a restore that was killed (unfinished content only); delete it`);
  }

  // 3. Conflicts, all decided before anything is written.
  // (rel is made of names isSafeName accepts, joined by '/': nothing for path.join to normalize.)
  const absOf = (rel: string) => (rel === '' ? target : target.endsWith('/') ? target + rel : `${target}/${rel}`);
  const existingAt = targetEmpty ? [] : await mapLimit(entries, FS_CONCURRENCY, (e) => fs.lstat(absOf(e.rel)).catch(() => null));
  const conflicts: string[] = [];
  const finalName = new Map<string, string>(); // rel -> rel actually written
  const skippedDirs: string[] = [];
  // An empty target: every entry goes where it is, under its own name.
  const plan: PlannedEntry[] = targetEmpty ? entries : [];
  for (let i = 0; i < (targetEmpty ? 0 : entries.length); i++) {
    const e = entries[i]!;
    if (skippedDirs.some((d) => e.rel.startsWith(d + '/'))) continue;
    const parentRel = path.posix.dirname(e.rel);
    const parentFinal = parentRel === '.' ? '' : finalName.get(parentRel) ?? parentRel;
    const rel = parentFinal ? `${parentFinal}/${path.posix.basename(e.rel)}` : path.posix.basename(e.rel);
    const abs = absOf(rel);
    // Looked up ahead under its own name; under a renamed parent, look again.
    const existing = rel === e.rel ? existingAt[i]! : await fs.lstat(abs).catch(() => null);
    if (!existing) {
      finalName.set(e.rel, rel);
      plan.push({ rel, node: e.node });
      continue;
    }
    if (e.node.type === 'dir' && existing.isDirectory()) {
      finalName.set(e.rel, rel);
      plan.push({ rel, node: e.node });
      continue;
    }
    switch (options.onConflict) {
      case 'error':
        conflicts.push(rel);
        break;
      case 'skip':
        result.skipped.push(rel);
        if (e.node.type === 'dir') skippedDirs.push(e.rel);
        break;
      case 'copy': {
        const renamed = await freeName(abs);
        const renamedRel = path.relative(target, renamed).split(path.sep).join('/');
        result.renamed.push({ from: rel, to: renamedRel });
        finalName.set(e.rel, renamedRel);
        plan.push({ rel: renamedRel, node: e.node });
        break;
      }
      case 'overwrite':
        if (existing.isDirectory()) {
          // A directory is never replaced by a file: that would delete what is under it.
          conflicts.push(`${rel} (a directory at the target; remove it by hand to restore a ${e.node.type} there)`);
        } else {
          finalName.set(e.rel, rel);
          plan.push({ rel, node: e.node });
        }
        break;
    }
  }
  if (conflicts.length > 0) {
    const shown = conflicts.slice(0, 3).join(', ') + (conflicts.length > 3 ? ` and ${conflicts.length - 3} more` : '');
    throw new StrataError(
      'STRATA_RESTORE_CONFLICT',
      `restore would overwrite ${conflicts.length} existing item(s) in ${target}: ${shown}; choose --on-conflict copy|skip|overwrite or an empty --target (nothing was written)`,
      { kind: 'usage' },
    );
  }

  // 4. Directories, top down (one depth at a time, in parallel within it), each created and opened
  // through its parent's descriptor: nothing but a real directory is written through, and a directory
  // swapped for a symlink meanwhile changes nothing (restore-target.ts). They are made while the
  // workers write the files' content into the staging directory (5), and needed only once the files
  // move into place (6); if one cannot be made, the restore stops at the next pack.
  const dirLevels = byDepth(plan.filter((e) => e.node.type === 'dir'));
  const rt = (held.rt = await RestoreTarget.open(target));
  const dirsMade = (held.dirsMade = (async () => {
    for (const level of dirLevels) {
      await mapLimit(level, FS_CONCURRENCY, (e) => rt.mkdir(e.rel, { replace: options.onConflict === 'overwrite' }));
      result.dirs += level.length;
    }
  })());
  dirsMade.catch(() => {}); // the Mover (6) waits for it and reports its failure

  // 5. File content: plan hard links, then write every needed blob, pack by pack, in offset order.
  const fileJobs: FileJob[] = [];
  const linkJobs: { rel: string; to: string; node: TreeNode }[] = [];
  const groupFirst = new Map<string, string>();
  // Content is written into the target's private staging directory, then renamed into place.
  await rt.staging();
  for (const e of plan) {
    if (e.node.type !== 'file') continue;
    if (e.node.linkGroup !== undefined) {
      const first = groupFirst.get(e.node.linkGroup);
      if (first !== undefined) {
        linkJobs.push({ rel: e.rel, to: first, node: e.node });
        continue;
      }
      groupFirst.set(e.node.linkGroup, e.rel);
    }
    const final = absOf(e.rel);
    fileJobs.push({ rel: e.rel, node: e.node, final, staged: fileJobs.length, tmp: rt.stagingPath(fileJobs.length) });
  }
  const totalBytes = fileJobs.reduce((a, f) => a + (f.node.size ?? 0), 0);
  const progress: RestoreProgress = { files: 0, totalFiles: fileJobs.length, bytes: 0, totalBytes };
  const metaOf = (node: TreeNode): Meta => ({ uid: node.uid, gid: node.gid, mode: node.mode, mtimeNs: node.mtimeNs, chown: ownership });
  // A staged file is created with its own mode when that comes out exact, and is not given the owner
  // it has already: two system calls fewer per file (~10-30 µs each here).
  const newFiles = rt.newFiles;
  const fileMetaOf = (node: TreeNode): Meta => {
    const meta = metaOf(node);
    if (!newFiles) return meta;
    if (meta.chown && node.uid === newFiles.uid && node.gid === newFiles.gid) meta.chown = false;
    if (newFiles.umask !== null && createsExactly(node.mode, newFiles.umask)) meta.modeSet = true;
    return meta;
  };

  // Group blob uses by pack. A file written by exactly one use is created by it; the others exist,
  // pre-sized, before any content is written.
  const byPack = new Map<string, Map<string, { loc: BlobLocation; uses: Use[] }>>();
  const usesOf = new Map<FileJob, number>();
  for (const f of fileJobs) {
    let offset = 0;
    let uses = 0;
    const locs = located.get(f.node)!;
    if (locs instanceof Error) throw locs;
    for (let i = 0; i < locs.length; i++) {
      const idHex = f.node.content![i]!;
      const loc = locs[i]!;
      let blobs = byPack.get(loc.packId);
      if (!blobs) byPack.set(loc.packId, (blobs = new Map()));
      let b = blobs.get(idHex);
      if (!b) blobs.set(idHex, (b = { loc, uses: [] }));
      b.uses.push({ file: f, offset });
      offset += loc.rawLength;
      uses++;
    }
    usesOf.set(f, uses);
    if (offset !== (f.node.size ?? 0)) result.warnings.push(`${f.rel}: stored size ${f.node.size} differs from its content (${offset} bytes)`);
  }
  const blobUse = (u: Use): BlobUse => {
    const whole = usesOf.get(u.file) === 1;
    return { path: u.file.tmp, offset: u.offset, whole, final: u.file.final, ...(whole ? { meta: fileMetaOf(u.file.node) } : {}) };
  };

  const workers = await workersStarted;
  const warn = (r: { warnings: string[] }) => result.warnings.push(...r.warnings);
  try {
    const creates: FileOp[] = [];
    for (const f of fileJobs) {
      const uses = usesOf.get(f)!;
      if (uses === 1) continue;
      const meta = fileMetaOf(f.node);
      const created = { op: 'create' as const, path: f.tmp, final: f.final, size: f.node.size ?? 0, ...(meta.modeSet ? { mode: meta.mode } : {}) };
      // Empty: its metadata now. Written in pieces: its mode (if exact) now, the rest when it is finished.
      creates.push(uses === 0 ? { ...created, meta } : created);
    }
    await runOps(workers, creates, warn);

    // 6. Files move into place (atomically replacing on overwrite, with the metadata of those written
    // in several pieces) as soon as their content is complete, while later packs are restored.
    const move = (files: FileJob[], concurrency: number) =>
      moveIntoPlace(rt, workers, files, (f) => (usesOf.get(f)! > 1 ? fileMetaOf(f.node) : undefined), warn, concurrency, (n) => {
        progress.files += n;
        options.onProgress?.({ ...progress });
      });
    const mover = new Mover(dirsMade, (files) => move(files, 1), OPS_PER_TASK);
    const usesLeft = new Map(usesOf);
    for (const f of fileJobs) if (usesOf.get(f) === 0) mover.add(f);
    try {
      // Each pack read once, in order, a few ahead of the workers.
      const packIds = [...byPack.keys()].sort();
      const ahead = Math.max(2, Math.min(reader.store.capabilities.connections, workers.size + 1));
      await mapLimit(packIds, ahead, async (packId) => {
        throwIfAborted(signal);
        mover.throwIfFailed(); // (a directory that could not be made, too)
        const blobs = [...byPack.get(packId)!.values()].sort((a, b) => a.loc.offset - b.loc.offset);
        const { task, transfer } = await packTask(reader, packId, blobs, blobUse, signal);
        const done = await workers.run<RestoreResultPart>(workers.leastBusy(), 'restore-pack', task, { transfer });
        crashPoint('restore-pack');
        warn(done);
        for (const b of blobs) {
          for (const u of b.uses) {
            const left = usesLeft.get(u.file)! - 1;
            usesLeft.set(u.file, left);
            if (left === 0) mover.add(u.file);
          }
        }
        progress.bytes += done.bytes;
        options.onProgress?.({ ...progress });
      });
    } catch (err) {
      mover.abort();
      await mover.done.catch(() => {});
      throw err;
    }
    throwIfAborted(signal);
    // The files not moved yet, all at once (nothing else runs now).
    await move(await mover.finish(), workers.size * 2);

    // Then links and symlinks.
    for (const f of fileJobs) {
      result.files++;
      result.bytes += f.node.size ?? 0;
    }
    for (const l of linkJobs) {
      await rt.link(l.to, l.rel, { replace: options.onConflict === 'overwrite' });
      result.hardlinks++;
      result.files++;
    }
    const symlinks: PlannedEntry[] = [];
    for (const e of plan) {
      if (e.node.type !== 'symlink') continue;
      await rt.symlink(e.node.target!, e.rel, { replace: options.onConflict === 'overwrite' });
      symlinks.push(e);
      result.symlinks++;
    }
    const metaWarning = (w: string | null) => void (w && result.warnings.push(w));
    await mapLimit(symlinks, FS_CONCURRENCY, async (e) => metaWarning(await rt.symlinkMeta(e.rel, metaOf(e.node))));
    // 7. Directory metadata last, deepest first, so writing files does not disturb mtimes; on the
    // workers, through a descriptor opened without following symlinks.
    for (const level of [...dirLevels].reverse()) {
      const per = Math.max(1, Math.min(OPS_PER_TASK, Math.ceil(level.length / workers.size)));
      await inParentBatches(rt, level, per, workers.size * 2, async (batch, at) => {
        const ops = batch.map((e): FileOp => ({ op: 'dirmeta', path: at(e), final: rt.shown(e.rel), meta: metaOf(e.node) }));
        warn(await workers.run<{ warnings: string[] }>(workers.leastBusy(), 'file-ops', ops));
      });
    }
  } finally {
    await workers.close();
    // Unfinished files are in the staging directory, removed with it when the target is closed.
  }
  options.onProgress?.({ ...progress });
  return result;
}

interface Use {
  file: FileJob;
  offset: number;
}

/** Trees at most per task of a worker reading them. */
const TREES_PER_TASK = 256;

/**
 * Every tree under `nodes`, read a level at a time. From a directory pool the workers read them (and
 * authenticate, decompress and verify them; this thread only parses), which they are otherwise idle
 * for; from any other store they are read here, FS_CONCURRENCY at a time.
 */
async function readTrees(reader: BlobReader, nodes: TreeNode[], workersStarted: Promise<WorkerPool>, signal?: AbortSignal): Promise<Map<string, Tree>> {
  const trees = new Map<string, Tree>();
  const workers = reader.store instanceof DirStore ? await workersStarted : null;
  for (let level = nodes; ; ) {
    const want = [...new Set(level.filter((n) => n.type === 'dir' && !trees.has(n.subtree!)).map((n) => n.subtree!))];
    if (want.length === 0) return trees;
    throwIfAborted(signal);
    if (workers) await readTreesOn(workers, reader, want, trees, signal);
    else await mapLimit(want, FS_CONCURRENCY, async (id) => void trees.set(id, await reader.tree(id, signal)));
    level = want.flatMap((id) => trees.get(id)!.nodes);
  }
}

async function readTreesOn(workers: WorkerPool, reader: BlobReader, ids: string[], trees: Map<string, Tree>, signal?: AbortSignal): Promise<void> {
  const store = reader.store as DirStore;
  const located = ids.map((id) => ({ id, loc: reader.locate(id) }));
  located.sort((a, b) => (a.loc.packId < b.loc.packId ? -1 : a.loc.packId > b.loc.packId ? 1 : a.loc.offset - b.loc.offset));
  const batches: (typeof located)[] = [];
  for (let i = 0; i < located.length; i += TREES_PER_TASK) batches.push(located.slice(i, i + TREES_PER_TASK));
  await mapLimit(batches, workers.size * 2, async (batch) => {
    const files: string[] = [];
    const fileOf = new Map<string, number>();
    const task: ReadBlobsTask = { files, file: [], offsets: [], lengths: [], rawLengths: [], compressions: [], ids: Buffer.allocUnsafe(32 * batch.length) };
    batch.forEach(({ loc }, i) => {
      let f = fileOf.get(loc.packId);
      if (f === undefined) fileOf.set(loc.packId, (f = files.push(store.path(packKey(loc.packId))) - 1));
      task.file.push(f);
      task.offsets.push(loc.offset);
      task.lengths.push(loc.length);
      task.rawLengths.push(loc.rawLength);
      task.compressions.push(loc.compression);
      loc.id.copy(task.ids as Buffer, 32 * i);
    });
    const r = await workers.run<ReadBlobsResult>(workers.leastBusy(), 'read-blobs', task);
    const failed = new Set(r.failed);
    for (let i = 0; i < batch.length; i++) {
      const id = batch[i]!.id;
      // A blob the worker could not read or verify is read here again, which reports why.
      if (failed.has(i)) trees.set(id, await reader.tree(id, signal));
      else trees.set(id, decodeTree(Buffer.from(r.data.buffer, r.data.byteOffset + (r.ends[i - 1] ?? 0), r.ends[i]! - (r.ends[i - 1] ?? 0)), `tree ${id.slice(0, 16)}`));
    }
  });
}

/**
 * The entries under `nodes` (paths relative to the target), depth first in tree order, from `trees`
 * (readTrees). Meanwhile each file's content is located in the index, into `located` (a missing blob
 * is recorded there as its error, thrown when the file is planned).
 */
function collect(reader: BlobReader, nodes: TreeNode[], trees: Map<string, Tree>, located: Map<TreeNode, BlobLocation[] | Error>): PlannedEntry[] {
  const out: PlannedEntry[] = [];
  const walk = (nodes: TreeNode[], prefix: string): void => {
    for (const node of nodes) {
      const rel = prefix ? `${prefix}/${node.name}` : node.name;
      if (node.type === 'file') {
        try {
          located.set(node, (node.content ?? []).map((id) => reader.locate(id)));
        } catch (err) {
          located.set(node, err as Error);
        }
      }
      out.push({ rel, node });
      if (node.type === 'dir') walk(trees.get(node.subtree!)!.nodes, rel);
    }
  };
  walk(nodes, '');
  return out;
}

/** Directories grouped by depth, shallowest first. */
function byDepth(dirs: PlannedEntry[]): PlannedEntry[][] {
  const levels: PlannedEntry[][] = [];
  for (const e of dirs) (levels[e.rel.split('/').length - 1] ??= []).push(e);
  return levels.filter((l) => l !== undefined);
}

/** Runs file operations on the workers in batches, spread over all of them; `onDone` counts the operations done. */
async function runOps(workers: WorkerPool, ops: FileOp[], warn: (r: { warnings: string[] }) => void, onDone?: (n: number) => void): Promise<void> {
  const per = Math.max(1, Math.min(OPS_PER_TASK, Math.ceil(ops.length / workers.size)));
  const batches: FileOp[][] = [];
  for (let i = 0; i < ops.length; i += per) batches.push(ops.slice(i, i + per));
  await mapLimit(batches, workers.size * 2, async (batch) => {
    warn(await workers.run<{ warnings: string[] }>(workers.leastBusy(), 'file-ops', batch));
    onDone?.(batch.length);
  });
}

/**
 * The task for the blobs a restore needs from one pack: the whole span when most of it is needed,
 * else each blob's range. From a directory pool the worker reads them itself (no buffer crosses
 * threads); from any other store they are read here and transferred.
 */
async function packTask(
  reader: BlobReader,
  packId: string,
  blobs: { loc: BlobLocation; uses: Use[] }[],
  use: (u: Use) => BlobUse,
  signal: AbortSignal | undefined,
): Promise<{ task: RestorePackTask; transfer: ArrayBuffer[] }> {
  const first = blobs[0]!.loc.offset;
  const last = blobs.at(-1)!.loc;
  const span = last.offset + last.length - first;
  const needed = blobs.reduce((a, b) => a + b.loc.length, 0);
  const key = packKey(packId);
  let reads: { offset: number; length: number }[];
  let offsets: number[];
  if (needed * 2 >= span) {
    reads = [{ offset: first, length: span }];
    offsets = blobs.map((b) => b.loc.offset - first);
  } else {
    reads = blobs.map((b) => ({ offset: b.loc.offset, length: b.loc.length }));
    offsets = [];
    let at = 0;
    for (const b of blobs) {
      offsets.push(at);
      at += b.loc.length;
    }
  }
  const ids = Buffer.allocUnsafe(blobs.length * 32);
  blobs.forEach((b, i) => b.loc.id.copy(ids, i * 32));
  const task: RestorePackTask = {
    packId,
    offsets,
    lengths: blobs.map((b) => b.loc.length),
    rawLengths: blobs.map((b) => b.loc.rawLength),
    compressions: blobs.map((b) => b.loc.compression),
    ids,
    uses: blobs.map((b) => b.uses.map(use)),
  };
  const store = reader.store;
  if (store instanceof DirStore) return { task: { ...task, file: store.path(key), key, reads }, transfer: [] };
  const parts: Buffer[] = [];
  for (const r of reads) {
    throwIfAborted(signal);
    parts.push(await store.get(key, { range: r, ...(signal ? { signal } : {}) }));
  }
  const { data, transfer } = transferable(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  return { task: { ...task, data }, transfer };
}

/** Directories at most whose descriptors one batch of file operations holds. */
const DIRS_PER_BATCH = 64;

/**
 * Runs `fn` on batches of `items` (at most `per` each, from at most DIRS_PER_BATCH directories, grouped
 * by directory), `concurrency` batches at a time. While a batch runs, the descriptors of its items'
 * parent directories are held, and `at(item)` names the item as `/proc/self/fd/<dirfd>/<name>`: a path
 * a worker can be handed, which cannot be diverted out of the target.
 */
async function inParentBatches<T extends { rel: string }>(
  rt: RestoreTarget,
  items: T[],
  per: number,
  concurrency: number,
  fn: (batch: T[], at: (item: T) => string) => Promise<void>,
): Promise<void> {
  const parentOf = (rel: string) => (rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');
  const sorted = [...items].sort((a, b) => (parentOf(a.rel) < parentOf(b.rel) ? -1 : parentOf(a.rel) > parentOf(b.rel) ? 1 : 0));
  const batches: T[][] = [];
  let batch: T[] = [];
  let dirs = new Set<string>();
  for (const item of sorted) {
    const dir = parentOf(item.rel);
    if (batch.length >= per || (!dirs.has(dir) && dirs.size >= DIRS_PER_BATCH)) {
      batches.push(batch);
      batch = [];
      dirs = new Set();
    }
    batch.push(item);
    dirs.add(dir);
  }
  if (batch.length) batches.push(batch);
  await mapLimit(batches, concurrency, async (b) => {
    const fds = new Map<string, number>();
    try {
      for (const d of new Set(b.map((item) => parentOf(item.rel)))) fds.set(d, await rt.acquire(d));
      await fn(b, (item) => RestoreTarget.at(fds.get(parentOf(item.rel))!, item.rel.slice(item.rel.lastIndexOf('/') + 1)));
    } finally {
      for (const d of fds.keys()) rt.release(d);
    }
  });
}

/**
 * Renames staged files into place on the workers (inParentBatches). Across filesystems (a mount point
 * inside the target) a batch is finished on this thread, copying.
 */
async function moveIntoPlace(
  rt: RestoreTarget,
  workers: WorkerPool,
  files: FileJob[],
  metaFor: (f: FileJob) => Meta | undefined,
  warn: (r: { warnings: string[] }) => void,
  concurrency: number,
  onDone: (n: number) => void,
): Promise<void> {
  const per = Math.max(1, Math.min(OPS_PER_TASK, Math.ceil(files.length / workers.size)));
  await inParentBatches(rt, files, per, concurrency, async (b, at) => {
    const ops: FileOp[] = b.map((f) => {
      const meta = metaFor(f);
      return { op: 'finish', path: f.tmp, final: at(f), ...(meta ? { meta } : {}) };
    });
    try {
      warn(await workers.run<{ warnings: string[] }>(workers.leastBusy(), 'file-ops', ops));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV' && !/EXDEV/.test((err as Error).message)) throw err;
      // Some of the batch may be in place already: the rest is moved here (copied across the mount).
      for (const f of b) {
        if (!(await fs.lstat(f.tmp).catch(() => null))) continue;
        const meta = metaFor(f);
        if (meta) warn(await workers.run<{ warnings: string[] }>(workers.leastBusy(), 'file-ops', [{ op: 'meta', path: f.tmp, meta }]));
        await rt.moveIntoPlace(f.staged, f.rel);
      }
    }
    onDone(b.length);
  });
}

/**
 * Files whose content is complete, moved into place in batches while the restore goes on: one batch at
 * a time, on one worker, between the pack tasks (a rename from the staging directory into another
 * directory takes the filesystem's rename lock: two at once only wait for each other, and a batch
 * at a time keeps the other worker on the packs). The first batch waits for `start` (the directories).
 */
class Mover {
  readonly done: Promise<void>;
  readonly #ready: FileJob[] = [];
  readonly #batch: number;
  #state: 'running' | 'finishing' | 'aborted' = 'running';
  #failed: { error: unknown } | null = null;
  #wake: (() => void) | null = null;

  constructor(start: Promise<void>, move: (files: FileJob[]) => Promise<void>, batch: number) {
    this.#batch = batch;
    this.done = this.#run(start, move);
    this.done.catch((error: unknown) => (this.#failed = { error }));
  }

  add(file: FileJob): void {
    this.#ready.push(file);
    if (this.#ready.length >= this.#batch) this.#notify();
  }

  /** Throws what made a batch fail, or `start`, if one did. */
  throwIfFailed(): void {
    if (this.#failed) throw this.#failed.error;
  }

  /** Stops after the batch under way; `done` then resolves (or rejects with a batch's error). */
  abort(): void {
    this.#state = 'aborted';
    this.#notify();
  }

  /** Waits for the batch under way, and returns the files added since (to be moved by the caller). */
  async finish(): Promise<FileJob[]> {
    this.#state = 'finishing';
    this.#notify();
    await this.done;
    return this.#ready.splice(0);
  }

  async #run(start: Promise<void>, move: (files: FileJob[]) => Promise<void>): Promise<void> {
    await start;
    for (;;) {
      if (this.#state !== 'running') return;
      if (this.#ready.length >= this.#batch) await move(this.#ready.splice(0, this.#batch));
      else await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** `name.restored`, `name.restored-2`, … : the first that does not exist. */
async function freeName(abs: string): Promise<string> {
  for (let i = 1; ; i++) {
    const candidate = `${abs}.restored${i === 1 ? '' : `-${i}`}`;
    if (!(await fs.lstat(candidate).catch(() => null))) return candidate;
  }
}

/**
 * Whether a file created with `mode` gets exactly it: no special bits (set-id, sticky), none that the
 * umask takes away, and read and write for its owner (a file written in pieces is opened again to write).
 */
export function createsExactly(mode: number, umask: number): boolean {
  return (mode & ~0o777) === 0 && (mode & umask) === 0 && (mode & 0o600) === 0o600;
}
