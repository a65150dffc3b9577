// Backup of a directory tree into a pool: walk, chunk, dedup, compress, encrypt, pack, trees, then
// the index segment and the manifest, in that order (DESIGN.md: write order).
import { promises as fs, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { minimatch } from 'minimatch';
import type { BlobIdSet } from '../catalog/blob-id-set.js';
import type { Catalog, FileCacheEntry } from '../catalog/catalog.js';
import type { Clock } from '../clock.js';
import { crashPoint } from '../crash.js';
import { StrataError, throwIfAborted } from '../errors.js';
import { encodeBlob } from './blob-codec.js';
import type { IndexedPack } from './index-segment.js';
import type { BackupStats, Manifest } from './manifest.js';
import { BlobType } from './pack.js';
import { Packer } from './packer.js';
import type { Pool } from './pool.js';
import { encodeTree, type TreeNode } from './tree.js';

export interface BackupProgress {
  phase: 'scanning' | 'backing up' | 'committing';
  files: number;
  bytes: number;
  /** Totals from a concurrent scan (or the previous recovery point); null until known. */
  totalFiles: number | null;
  totalBytes: number | null;
  newBytes: number;
  currentPath: string;
}

export interface BackupOptions {
  /** Protection group, or "" for an ad hoc backup. */
  group: string;
  /** Absolute path of the data source, as recorded in the recovery point. */
  source: string;
  /** Where to read from, when not `source` itself (a consistent copy made for the backup, e.g. of a SQLite database). */
  snapshotDir?: string;
  sourceType?: string;
  /** Glob patterns; a match on a directory skips all below it. */
  exclude?: string[];
  host: string;
  clock: Clock;
  signal?: AbortSignal;
  /** Called often (throttle it yourself); never after the promise settles. */
  onProgress?: (p: BackupProgress) => void;
  /** Called once per file that could not be backed up; the job ends 'completed with warnings'. */
  onFileError?: (relPath: string, message: string) => void;
  /** Index segments are written every this many packs, so a long interrupted backup keeps its progress. */
  indexEvery?: number;
}

export interface BackupResult {
  id: string;
  manifest: Manifest;
}

const READ_BYTES = 8 * 1024 * 1024;

interface HardlinkSeen {
  relPath: string;
  content: string[];
  size: number;
}

/** Runs one backup. The caller holds the pool lock and has synced the catalog with the pool. */
export async function backupDirectory(pool: Pool, catalog: Catalog, options: BackupOptions): Promise<BackupResult> {
  const run = new BackupRun(pool, catalog, options);
  return run.run();
}

class BackupRun {
  readonly pool: Pool;
  readonly catalog: Catalog;
  readonly options: BackupOptions;
  readonly known: BlobIdSet;
  readonly oldCache: Map<string, FileCacheEntry>;
  readonly newCache = new Map<string, FileCacheEntry>();
  readonly hardlinks = new Map<string, HardlinkSeen>();
  readonly warnings: string[] = [];
  readonly packer: Packer;
  readonly unindexed: IndexedPack[] = [];
  readonly excludes: ((rel: string) => boolean)[];
  readonly stats: BackupStats = {
    files: 0,
    dirs: 0,
    symlinks: 0,
    bytes: 0,
    filesRead: 0,
    bytesRead: 0,
    newBlobs: 0,
    newBytes: 0,
    storedBytes: 0,
    packs: 0,
    warnings: 0,
    durationMs: 0,
  };
  readonly progress: BackupProgress = { phase: 'backing up', files: 0, bytes: 0, totalFiles: null, totalBytes: null, newBytes: 0, currentPath: '' };
  readonly root: string;
  #readBuf: Buffer | null = null;
  #indexWrites: Promise<void> = Promise.resolve();

  constructor(pool: Pool, catalog: Catalog, options: BackupOptions) {
    this.pool = pool;
    this.catalog = catalog;
    this.options = options;
    this.root = options.snapshotDir ?? options.source;
    this.known = catalog.knownBlobIds();
    this.oldCache = catalog.loadFileCache(cacheKey(options));
    this.excludes = (options.exclude ?? []).map((pattern) => {
      const m = (p: string) => minimatch(p, pattern, { dot: true, matchBase: !pattern.includes('/') });
      return (rel: string) => m(rel);
    });
    this.packer = new Packer(pool.store, {
      encKey: pool.keys.encKey,
      targetBytes: pool.description.packTargetBytes,
      ...(options.signal ? { signal: options.signal } : {}),
      onPackWritten: (pack) => {
        this.unindexed.push(pack);
        if (this.unindexed.length >= (options.indexEvery ?? 64)) this.#writeIndex();
      },
    });
  }

  /** Writes an index segment for the packs written so far and records it in the catalog. Serialized. */
  #writeIndex(): void {
    const packs = this.unindexed.splice(0);
    if (packs.length === 0) return;
    this.#indexWrites = this.#indexWrites.then(async () => {
      const indexId = await this.pool.writeIndex({ supersedes: [], packs });
      crashPoint('index-written');
      this.catalog.addIndexSegment(
        indexId,
        packs.map((p) => ({ id: p.id.toString('hex'), size: p.size, entries: p.entries })),
      );
    });
  }

  async run(): Promise<BackupResult> {
    const { options } = this;
    const started = options.clock.now();
    let rootStat: BigIntStats;
    try {
      rootStat = await fs.stat(this.root, { bigint: true });
    } catch (err) {
      throw new StrataError('STRATA_SOURCE_MISSING', `cannot read the data source ${options.source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        cause: err,
      });
    }
    if (!rootStat.isDirectory()) throw new StrataError('STRATA_SOURCE_NOT_DIR', `the data source ${options.source} is not a directory`);

    const parentRow = this.catalog
      .recoveryPoints({ group: options.group, source: options.source })
      .filter((r) => r.diskState === 'present')
      .at(-1);
    if (parentRow) {
      this.progress.totalBytes = parentRow.stats['bytes'] ?? null;
      this.progress.totalFiles = parentRow.stats['files'] ?? null;
    }
    const scan = parentRow ? Promise.resolve() : this.#scanTotals();

    let rootTree: string;
    try {
      rootTree = await this.#dir(this.root, '', rootStat);
      this.progress.phase = 'committing';
      this.#report(true);
      await this.packer.flush();
      this.#writeIndex();
      await this.#indexWrites;
    } catch (err) {
      await this.packer.abandon();
      await this.#indexWrites.catch(() => {});
      throw err;
    }
    await scan.catch(() => {});
    this.stats.storedBytes = this.packer.bytesWritten;
    this.stats.warnings = this.warnings.length;
    this.stats.durationMs = options.clock.now() - started;
    const manifest: Manifest = {
      v: 1,
      group: options.group,
      source: options.source,
      sourceType: options.sourceType ?? 'directory',
      host: options.host,
      time: new Date(started).toISOString(),
      tree: rootTree,
      parent: parentRow?.id ?? null,
      stats: this.stats,
      warnings: this.warnings,
    };
    throwIfAborted(options.signal);
    crashPoint('before-manifest');
    const id = await this.pool.writeManifest(manifest);
    crashPoint('manifest-written');
    this.catalog.transaction(() => {
      this.catalog.addRecoveryPoint({
        id,
        group: manifest.group,
        source: manifest.source,
        sourceType: manifest.sourceType,
        host: manifest.host,
        time: started,
        tree: manifest.tree,
        parent: manifest.parent,
        stats: { ...manifest.stats },
        warnings: manifest.warnings,
      });
      this.catalog.replaceFileCache(cacheKey(options), this.newCache);
    });
    return { id, manifest };
  }

  #lastReport = 0;
  #report(force = false): void {
    if (!this.options.onProgress) return;
    const now = this.options.clock.now();
    if (!force && now - this.#lastReport < 100) return;
    this.#lastReport = now;
    this.options.onProgress({ ...this.progress });
  }

  #warn(relPath: string, message: string): void {
    const shown = relPath || '.';
    this.warnings.push(`${shown}: ${message}`);
    this.options.onFileError?.(shown, message);
  }

  #excluded(rel: string): boolean {
    return this.excludes.some((m) => m(rel));
  }

  /** A concurrent walk that only counts, so progress can show an ETA on a first backup. */
  async #scanTotals(): Promise<void> {
    let files = 0;
    let bytes = 0;
    const walk = async (abs: string, rel: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(abs, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        if (this.options.signal?.aborted) return;
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (this.#excluded(r)) continue;
        const a = path.join(abs, e.name);
        if (e.isDirectory()) await walk(a, r);
        else if (e.isFile()) {
          files++;
          try {
            bytes += (await fs.lstat(a)).size;
          } catch {
            /* counted when backed up */
          }
        }
      }
    };
    this.progress.phase = 'scanning';
    await walk(this.root, '');
    this.progress.totalFiles = files;
    this.progress.totalBytes = bytes;
    if (this.progress.phase === 'scanning') this.progress.phase = 'backing up';
  }

  /** Backs up a directory; returns its tree id. */
  async #dir(abs: string, rel: string, _st: BigIntStats): Promise<string> {
    throwIfAborted(this.options.signal);
    this.stats.dirs++;
    let names: string[];
    try {
      names = (await fs.readdir(abs)).sort();
    } catch (err) {
      this.#warn(rel, `cannot list directory: ${errCode(err)}`);
      names = [];
    }
    const nodes: TreeNode[] = [];
    for (const name of names) {
      const childRel = rel ? `${rel}/${name}` : name;
      if (this.#excluded(childRel)) continue;
      const childAbs = path.join(abs, name);
      let cst: BigIntStats;
      try {
        cst = await fs.lstat(childAbs, { bigint: true });
      } catch (err) {
        this.#warn(childRel, `cannot read metadata: ${errCode(err)}`);
        continue;
      }
      const meta = { name, mode: Number(cst.mode & 0o7777n), uid: Number(cst.uid), gid: Number(cst.gid), mtimeNs: cst.mtimeNs.toString() };
      if (cst.isDirectory()) {
        const subtree = await this.#dir(childAbs, childRel, cst);
        nodes.push({ ...meta, type: 'dir', subtree });
      } else if (cst.isFile()) {
        const node = await this.#file(childAbs, childRel, cst, meta);
        if (node) nodes.push(node);
      } else if (cst.isSymbolicLink()) {
        try {
          const target = await fs.readlink(childAbs);
          nodes.push({ ...meta, type: 'symlink', target });
          this.stats.symlinks++;
        } catch (err) {
          this.#warn(childRel, `cannot read symlink: ${errCode(err)}`);
        }
      } else {
        const kind = cst.isSocket() ? 'socket' : cst.isFIFO() ? 'FIFO' : cst.isBlockDevice() ? 'block device' : cst.isCharacterDevice() ? 'character device' : 'special file';
        this.#warn(childRel, `skipped: a ${kind} cannot be backed up`);
      }
    }
    return this.#storeTree(nodes);
  }

  async #storeTree(nodes: TreeNode[]): Promise<string> {
    crashPoint('tree');
    const data = encodeTree({ nodes });
    const id = this.pool.blobId(data);
    if (this.known.add(id)) {
      const enc = encodeBlob(this.pool.keys.encKey, id, data);
      await this.packer.add(BlobType.Tree, id, enc.sealed, data.length, enc.compression);
    }
    return id.toString('hex');
  }

  async #file(abs: string, rel: string, st: BigIntStats, meta: Omit<TreeNode, 'type'>): Promise<TreeNode | null> {
    const size = Number(st.size);
    const node: TreeNode = { ...meta, type: 'file', size, content: [] };
    this.progress.currentPath = rel;
    const linkKey = st.nlink > 1n ? `${st.dev}:${st.ino}` : null;
    if (linkKey) {
      const seen = this.hardlinks.get(linkKey);
      if (seen) {
        node.linkGroup = seen.relPath;
        node.content = seen.content;
        node.size = seen.size;
        this.stats.files++;
        return node;
      }
      node.linkGroup = rel;
    }
    const cacheEntry: FileCacheEntry = { size, mtimeNs: st.mtimeNs.toString(), ctimeNs: st.ctimeNs.toString(), inode: st.ino.toString(), content: [] };
    const cached = this.oldCache.get(rel);
    if (
      cached &&
      cached.size === cacheEntry.size &&
      cached.mtimeNs === cacheEntry.mtimeNs &&
      cached.ctimeNs === cacheEntry.ctimeNs &&
      cached.inode === cacheEntry.inode &&
      cached.content.every((id) => this.known.has(Buffer.from(id, 'hex')))
    ) {
      node.content = cached.content;
      this.newCache.set(rel, cached);
    } else {
      const read = await this.#readFile(abs, rel, st);
      if (!read) return null;
      node.content = read.content;
      node.size = read.size;
      if (!read.changed) this.newCache.set(rel, { ...cacheEntry, content: read.content });
    }
    if (linkKey) this.hardlinks.set(linkKey, { relPath: rel, content: node.content!, size: node.size! });
    this.stats.files++;
    this.stats.bytes += node.size!;
    this.progress.files++;
    this.progress.bytes += node.size!;
    this.#report();
    return node;
  }

  /** Reads, chunks and stores a file's content. Returns null (with a warning) if it cannot be read. */
  async #readFile(abs: string, rel: string, before: BigIntStats): Promise<{ content: string[]; size: number; changed: boolean } | null> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(abs, 'r');
    } catch (err) {
      this.#warn(rel, `cannot open: ${errCode(err)}`);
      return null;
    }
    const content: string[] = [];
    let total = 0;
    try {
      const opened = await handle.stat({ bigint: true });
      const { max } = this.pool.description.chunker;
      const chunker = this.pool.chunker;
      if (opened.size < BigInt(this.pool.description.chunker.min)) {
        // Small file: one read, one chunk.
        const data = await handle.readFile();
        if (data.length > 0) content.push(await this.#chunk(data));
        total = data.length;
      } else {
        const buf = (this.#readBuf ??= Buffer.allocUnsafe(max + READ_BYTES));
        let start = 0;
        let end = 0;
        let eof = false;
        for (;;) {
          throwIfAborted(this.options.signal);
          while (!eof && end - start < max) {
            if (end === buf.length) {
              buf.copy(buf, 0, start, end);
              end -= start;
              start = 0;
            }
            const { bytesRead } = await handle.read(buf, end, buf.length - end, null);
            if (bytesRead === 0) eof = true;
            end += bytesRead;
          }
          if (start === end) break;
          const n = chunker.cut(buf, start, end, eof);
          content.push(await this.#chunk(buf.subarray(start, start + n)));
          start += n;
          total += n;
          this.progress.bytes += n;
          this.#report();
        }
        this.progress.bytes -= total; // counted again by the caller with the file
      }
      const after = await handle.stat({ bigint: true });
      this.stats.filesRead++;
      this.stats.bytesRead += total;
      const changed =
        after.size !== before.size || after.mtimeNs !== before.mtimeNs || BigInt(total) !== after.size || opened.ino !== before.ino;
      if (changed) this.#warn(rel, 'changed while it was being read; the recovery point holds the content as read');
      return { content, size: total, changed };
    } catch (err) {
      if ((err as { name?: string }).name === 'AbortError' || this.options.signal?.aborted) throw err;
      if (err instanceof StrataError) throw err;
      this.#warn(rel, `read failed: ${errCode(err)}`);
      return null;
    } finally {
      await handle.close();
    }
  }

  /** Stores one chunk if it is new; returns its id (hex). `data` may be a view into a reused buffer. */
  async #chunk(data: Buffer): Promise<string> {
    const id = this.pool.blobId(data);
    if (this.known.add(id)) {
      const enc = encodeBlob(this.pool.keys.encKey, id, data);
      this.stats.newBlobs++;
      this.stats.newBytes += data.length;
      this.progress.newBytes += data.length;
      await this.packer.add(BlobType.Data, id, enc.sealed, data.length, enc.compression);
    }
    return id.toString('hex');
  }
}

/** The file-metadata cache is kept per protection group and data source. */
function cacheKey(options: { group: string; source: string }): string {
  return `${options.group}\u0000${options.source}`;
}

function errCode(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code} (${e.message.replace(/^[A-Z]+: /, '')})` : String((err as Error).message ?? err);
}
