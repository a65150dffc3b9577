// Restore of a recovery point, or one item of it, into a target directory. Never overwrites silently,
// never writes outside the target, reads each pack once and in order.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { StrataError, throwIfAborted } from '../errors.js';
import type { BlobReader } from './blob-reader.js';
import type { BlobLocation } from '../catalog/catalog.js';
import { packKey } from './pool.js';
import { isSafeName, type TreeNode } from './tree.js';

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
  /** Where content is written first (same directory), renamed to `final` at the end. */
  tmp: string;
  final: string;
}

const TMP_PREFIX = '.strata-restore-';

export async function restoreTree(reader: BlobReader, rootTree: string, options: RestoreOptions): Promise<RestoreResult> {
  const result: RestoreResult = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, bytes: 0, skipped: [], renamed: [], warnings: [] };
  const signal = options.signal;
  const ownership = options.restoreOwnership ?? process.getuid?.() === 0;

  // 1. Find what to restore.
  let entries: PlannedEntry[];
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
    entries = [];
    await collect(reader, node!, node!.name, entries, signal);
  } else {
    entries = [];
    const root = await reader.tree(rootTree, signal);
    for (const n of root.nodes) await collect(reader, n, n.name, entries, signal);
  }

  // 2. The target: create it if needed, and work under its real path.
  await fs.mkdir(options.target, { recursive: true });
  const target = await fs.realpath(options.target);

  // 3. Conflicts, all decided before anything is written.
  const conflicts: string[] = [];
  const finalName = new Map<string, string>(); // rel -> rel actually written
  const skippedDirs: string[] = [];
  const plan: PlannedEntry[] = [];
  for (const e of entries) {
    if (skippedDirs.some((d) => e.rel.startsWith(d + '/'))) continue;
    const parentRel = path.posix.dirname(e.rel);
    const parentFinal = parentRel === '.' ? '' : finalName.get(parentRel) ?? parentRel;
    const rel = parentFinal ? `${parentFinal}/${path.posix.basename(e.rel)}` : path.posix.basename(e.rel);
    const abs = path.join(target, ...rel.split('/'));
    const existing = await fs.lstat(abs).catch(() => null);
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

  // 4. Directories, top down; refuse to write through anything but a real directory.
  const absOf = (rel: string) => path.join(target, ...rel.split('/'));
  for (const e of plan) {
    if (e.node.type !== 'dir') continue;
    const abs = absOf(e.rel);
    await assertInside(target, abs);
    try {
      await fs.mkdir(abs, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await fs.lstat(abs);
      if (!st.isDirectory()) throw new StrataError('STRATA_RESTORE_UNSAFE', `${abs} is not a directory (a symlink?); refusing to restore through it`, { kind: 'failed' });
    }
    result.dirs++;
  }

  // 5. File content: plan hard links, then write every needed blob, pack by pack, in offset order.
  const fileJobs: FileJob[] = [];
  const linkJobs: { rel: string; to: string; node: TreeNode }[] = [];
  const groupFirst = new Map<string, string>();
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
    await assertInside(target, path.dirname(final));
    fileJobs.push({ rel: e.rel, node: e.node, final, tmp: path.join(path.dirname(final), `${TMP_PREFIX}${randomBytes(6).toString('hex')}`) });
  }
  const totalBytes = fileJobs.reduce((a, f) => a + (f.node.size ?? 0), 0);
  const progress: RestoreProgress = { files: 0, totalFiles: fileJobs.length, bytes: 0, totalBytes };
  const tmpFiles: string[] = [];
  try {
    // Pre-size every file.
    for (const f of fileJobs) {
      const h = await fs.open(f.tmp, 'wx', 0o600);
      tmpFiles.push(f.tmp);
      try {
        if ((f.node.size ?? 0) > 0) await h.truncate(f.node.size!);
      } finally {
        await h.close();
      }
    }
    // Group blob uses by pack.
    interface Use {
      file: FileJob;
      offset: number;
    }
    const byPack = new Map<string, Map<string, { loc: BlobLocation; uses: Use[] }>>();
    for (const f of fileJobs) {
      let offset = 0;
      for (const idHex of f.node.content ?? []) {
        const loc = reader.locate(idHex);
        let blobs = byPack.get(loc.packId);
        if (!blobs) byPack.set(loc.packId, (blobs = new Map()));
        let b = blobs.get(idHex);
        if (!b) blobs.set(idHex, (b = { loc, uses: [] }));
        b.uses.push({ file: f, offset });
        offset += loc.rawLength;
      }
      if (offset !== (f.node.size ?? 0)) result.warnings.push(`${f.rel}: stored size ${f.node.size} differs from its content (${offset} bytes)`);
    }
    const packIds = [...byPack.keys()].sort();
    const parallel = Math.max(1, Math.min(4, reader.store.capabilities.connections));
    let next = 0;
    const worker = async () => {
      while (next < packIds.length) {
        const packId = packIds[next++]!;
        const blobs = [...byPack.get(packId)!.values()].sort((a, b) => a.loc.offset - b.loc.offset);
        await restorePack(reader, packId, blobs, signal, (n) => {
          progress.bytes += n;
          options.onProgress?.({ ...progress });
        });
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));

    // 6. Move files into place (atomically replacing on overwrite), then links and symlinks.
    for (const f of fileJobs) {
      throwIfAborted(signal);
      await fs.rename(f.tmp, f.final);
      tmpFiles.splice(tmpFiles.indexOf(f.tmp), 1);
      await applyMeta(f.final, f.node, ownership, false, result);
      result.files++;
      result.bytes += f.node.size ?? 0;
      progress.files++;
    }
  } finally {
    await Promise.all(tmpFiles.map((t) => fs.rm(t, { force: true })));
  }
  for (const l of linkJobs) {
    const abs = absOf(l.rel);
    await assertInside(target, path.dirname(abs));
    if (options.onConflict === 'overwrite') await fs.rm(abs, { force: true });
    await fs.link(absOf(l.to), abs);
    result.hardlinks++;
    result.files++;
  }
  for (const e of plan) {
    if (e.node.type !== 'symlink') continue;
    const abs = absOf(e.rel);
    await assertInside(target, path.dirname(abs));
    if (options.onConflict === 'overwrite') await fs.rm(abs, { force: true });
    await fs.symlink(e.node.target!, abs);
    await applyMeta(abs, e.node, ownership, true, result);
    result.symlinks++;
  }
  // 7. Directory metadata last, deepest first, so writing files does not disturb mtimes.
  for (const e of [...plan].reverse()) {
    if (e.node.type === 'dir') await applyMeta(absOf(e.rel), e.node, ownership, false, result);
  }
  options.onProgress?.({ ...progress });
  return result;
}

async function collect(reader: BlobReader, node: TreeNode, rel: string, out: PlannedEntry[], signal?: AbortSignal): Promise<void> {
  out.push({ rel, node });
  if (node.type !== 'dir') return;
  const tree = await reader.tree(node.subtree!, signal);
  for (const child of tree.nodes) await collect(reader, child, `${rel}/${child.name}`, out, signal);
}

/** Reads the blobs a restore needs from one pack: the whole pack when most of it is needed, else ranges. */
async function restorePack(
  reader: BlobReader,
  packId: string,
  blobs: { loc: BlobLocation; uses: { file: FileJob; offset: number }[] }[],
  signal: AbortSignal | undefined,
  onBytes: (n: number) => void,
): Promise<void> {
  const first = blobs[0]!.loc.offset;
  const last = blobs.at(-1)!.loc;
  const span = last.offset + last.length - first;
  const needed = blobs.reduce((a, b) => a + b.loc.length, 0);
  let spanBuf: Buffer | null = null;
  if (needed * 2 >= span) {
    spanBuf = await reader.store.get(packKey(packId), { range: { offset: first, length: span }, ...(signal ? { signal } : {}) });
  }
  for (const b of blobs) {
    throwIfAborted(signal);
    const sealed = spanBuf
      ? spanBuf.subarray(b.loc.offset - first, b.loc.offset - first + b.loc.length)
      : await reader.store.get(packKey(packId), { range: { offset: b.loc.offset, length: b.loc.length }, ...(signal ? { signal } : {}) });
    const plain = reader.decode(b.loc, sealed);
    for (const use of b.uses) {
      const h = await fs.open(use.file.tmp, 'r+');
      try {
        await h.write(plain, 0, plain.length, use.offset);
      } finally {
        await h.close();
      }
      onBytes(plain.length);
    }
  }
}

async function applyMeta(abs: string, node: TreeNode, ownership: boolean, isLink: boolean, result: RestoreResult): Promise<void> {
  const mtime = Number(BigInt(node.mtimeNs) / 1000n) / 1e6;
  try {
    if (ownership) await (isLink ? fs.lchown(abs, node.uid, node.gid) : fs.chown(abs, node.uid, node.gid));
    if (!isLink) await fs.chmod(abs, node.mode);
    await (isLink ? fs.lutimes(abs, mtime, mtime) : fs.utimes(abs, mtime, mtime));
  } catch (err) {
    result.warnings.push(`${abs}: could not restore metadata: ${(err as Error).message}`);
  }
}

/** Checks that `abs` resolves inside `target` (no symlink in the way leads elsewhere). */
async function assertInside(target: string, abs: string): Promise<void> {
  const real = await fs.realpath(abs).catch(() => null);
  const check = real ?? abs;
  if (check !== target && !check.startsWith(target + path.sep)) {
    throw new StrataError('STRATA_RESTORE_UNSAFE', `${abs} resolves outside the restore target ${target}; refusing to write there`, { kind: 'failed' });
  }
}

/** `name.restored`, `name.restored-2`, … : the first that does not exist. */
async function freeName(abs: string): Promise<string> {
  for (let i = 1; ; i++) {
    const candidate = `${abs}.restored${i === 1 ? '' : `-${i}`}`;
    if (!(await fs.lstat(candidate).catch(() => null))) return candidate;
  }
}
