// Backup of a directory tree into a pool: walk, chunk, dedup, compress, encrypt, pack, trees, then
// the index segment and the manifest, in that order (DESIGN.md: write order).
import { promises as fs, type BigIntStats } from 'node:fs';
import type { BlobIdSet } from '../catalog/blob-id-set.js';
import type { Catalog } from '../catalog/catalog.js';
import { fileCacheContent, fileCacheData, fileCacheMatches, FILE_CACHE_HEADER, type FileCacheUpdate } from '../catalog/file-cache.js';
import type { Clock } from '../clock.js';
import { crashPoint } from '../crash.js';
import { gearTable } from '../crypto/hash.js';
import { StrataError, throwIfAborted } from '../errors.js';
import { encodeBlob } from './blob-codec.js';
import type { IndexedPack } from './index-segment.js';
import type { BackupStats, Manifest } from './manifest.js';
import { BlobType } from './pack.js';
import { Packer } from './packer.js';
import { BackupStage, type FileOutcome } from './pipeline/backup-stage.js';
import { ByteBudget, createBudget } from './pipeline/byte-budget.js';
import type { WorkerPool } from './pipeline/worker-pool.js';
import { entryAt, failedError, type EntryStat } from './pipeline/listing.js';
import { isWalkOf, startTreeWalk, type TreeWalk } from './pipeline/walk-feed.js';
import { deserializeError } from './pipeline/protocol.js';
import { defaultWorkerCount, startListers, startWorkers } from './pipeline/workers.js';
import type { Pool } from './pool.js';
import { encodeTree, type TreeNode } from './tree.js';

export { startTreeWalk, type TreeWalk } from './pipeline/walk-feed.js';

/** How far the tree's listing may run ahead of a first backup's walk (memory: ~150 bytes an entry). */
const FIRST_BACKUP_AHEAD_ENTRIES = 8192;
/** Files the walk may go past while the pipeline's workers start (each holds only its tree node meanwhile). */
const EARLY_SUBMITS = 1024;
/** The walk lets the event loop run at least this often (ms). */
const WALK_SLICE_MS = 5;

export interface BackupProgress {
  /** 'pre command': the source's pre command runs (agent/jobs.ts), before any file is read. */
  phase: 'pre command' | 'scanning' | 'backing up' | 'committing';
  files: number;
  bytes: number;
  /** Totals from a concurrent scan (or the previous recovery point); null until known. */
  totalFiles: number | null;
  totalBytes: number | null;
  newBytes: number;
  currentPath: string;
}

/** Pack entries held for the next index segment before it is written (~2.5 MiB of heap). */
export const INDEX_EVERY_BLOBS = 16384;

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
  /** …and every this many blobs in the packs not yet indexed (default `INDEX_EVERY_BLOBS`), so memory stays flat however small the files. */
  indexEveryBlobs?: number;
  /** Worker threads that read, chunk, hash, compress and seal (default: one per core; 0: in-process). */
  workers?: number;
  /**
   * The listing of the tree, started early (startTreeWalk) on the directory read (`snapshotDir` or
   * `source`) with `exclude`; the backup takes it over and closes it. Default: started with the run.
   */
  walk?: TreeWalk;
  /**
   * The dedup set, loaded early (while the pool's key is derived) at the catalog's blob generation
   * `generation`; used only if the generation is unchanged once the backup starts, and then taken over.
   */
  known?: { set: BlobIdSet; generation: string };
}

export interface BackupResult {
  id: string;
  manifest: Manifest;
}

interface HardlinkSeen {
  relPath: string;
  /** The first link's content once read; null if it could not be read. */
  done: Promise<{ content: string[]; size: number } | null>;
}

interface ScanEntry {
  name: string;
  rel: string;
  abs: string;
  st: EntryStat | null;
  err: unknown;
}

interface Scan {
  entries: ScanEntry[];
  error: unknown;
}

/** The file-metadata cache entries of a directory being walked, as stored and as they will be. */
interface DirCache {
  dir: string;
  /** name → the stored entry (file-cache.ts fileCacheData). */
  old: Map<string, Buffer>;
  /** The entries to store once every file of the directory is done: kept ones and newly read ones. */
  next: Map<string, Buffer>;
  /** Set when `next` holds an entry that is not in `old` as it is. */
  changed: boolean;
}

/** A tree node still being produced: the walk goes on while files are read and subtrees stored. */
type PendingNode = TreeNode | Promise<TreeNode | null>;

/**
 * Runs one backup. The caller holds the pool lock and has synced the catalog with the pool.
 *
 * The walk lists directories in sorted order (pipeline/dir-lister.ts: synchronous calls while the
 * metadata is cached, several calls in flight and listings ahead when it is not) and hands every file
 * the metadata cache cannot skip to the pipeline (pipeline/backup-stage.ts): worker threads read,
 * chunk, hash, and compress and seal only chunks not already stored; the main thread decides dedup
 * and packs. A directory's tree is stored once all its entries are done, so trees, content ids and
 * warnings come out exactly as a sequential walk would produce them.
 */
export async function backupDirectory(pool: Pool, catalog: Catalog, options: BackupOptions): Promise<BackupResult> {
  const run = new BackupRun(pool, catalog, options);
  return run.run();
}

class BackupRun {
  readonly pool: Pool;
  readonly catalog: Catalog;
  readonly options: BackupOptions;
  readonly known: BlobIdSet;
  /** The file-metadata cache's key for this source. */
  readonly cacheSource: string;
  /** Changes to the cache (new, changed and dropped entries), applied with the recovery point. */
  readonly cacheUpdate: FileCacheUpdate;
  /** Directories walked (relative): the cache entries of any other directory are dropped at commit. */
  readonly walkedDirs = new Set<string>();
  readonly hardlinks = new Map<string, HardlinkSeen>();
  readonly warnings: { seq: number; text: string }[] = [];
  readonly packer: Packer;
  readonly unindexed: IndexedPack[] = [];
  /** Blobs in `unindexed`. */
  #unindexedEntries = 0;
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
  /** The lister thread listing the tree ahead of the walk (given, or started with the run). */
  #walk: TreeWalk | null = null;
  /** Fails the whole run fast: aborted by the caller's signal or by the first error. */
  readonly #abort = new AbortController();
  /** Started on the first file that has to be read (an unchanged tree needs no workers). */
  #pipeline: Promise<{ stage: BackupStage; workers: WorkerPool }> | null = null;
  /** The stage, once the pipeline has started. */
  #readyStage: BackupStage | null = null;
  /** The last file submitted (they are submitted in walk order, one after the other). */
  #submits: Promise<unknown> = Promise.resolve();
  /** Files the walk went past while the pipeline was starting. */
  #earlySubmits = 0;
  /** When the walk last let the event loop run. */
  #sliceStart = performance.now();
  #indexWrites: Promise<void> = Promise.resolve();
  /**
   * The catalog's blob generation `known` is exact for, as this run's own index segments move it on;
   * null once anyone else changed the blobs meanwhile (then `known` is not saved as a snapshot).
   */
  #knownGeneration: string | null = null;
  /** Visit order of entries, so warnings come out in walk order whatever order files finish in. */
  #seq = 0;

  constructor(pool: Pool, catalog: Catalog, options: BackupOptions) {
    this.pool = pool;
    this.catalog = catalog;
    this.options = options;
    this.root = options.snapshotDir ?? options.source;
    const early = options.known;
    const loaded = early && early.generation === catalog.blobGeneration() ? early : catalog.loadKnownBlobIds();
    this.known = loaded.set;
    this.#knownGeneration = loaded.generation;
    this.cacheSource = cacheKey(options);
    this.cacheUpdate = catalog.fileCacheUpdate(this.cacheSource);
    const walk = options.walk;
    if (walk && isWalkOf(walk, this.root, options.exclude ?? [])) this.#walk = walk;
    else void walk?.close(); // not of this tree: the run lists its own
    this.packer = new Packer(pool.store, {
      encKey: pool.keys.encKey,
      targetBytes: pool.description.packTargetBytes,
      signal: this.#abort.signal,
      retain: false,
      onPackWritten: (pack) => {
        this.stats.packs++;
        this.unindexed.push(pack);
        this.#unindexedEntries += pack.entries.length;
        // By blobs too: packs of small files hold thousands of entries each (an id Buffer and an
        // object apiece), and 64 of them were ~30 MiB of heap at the end of an 8 GiB backup.
        if (this.unindexed.length >= (options.indexEvery ?? 64) || this.#unindexedEntries >= (options.indexEveryBlobs ?? INDEX_EVERY_BLOBS)) this.#writeIndex();
      },
    });
  }

  /** Writes an index segment for the packs written so far and records it in the catalog. Serialized. */
  #writeIndex(): void {
    const packs = this.unindexed.splice(0);
    this.#unindexedEntries = 0;
    if (packs.length === 0) return;
    this.#indexWrites = this.#indexWrites.then(async () => {
      const indexId = await this.pool.writeIndex({ supersedes: [], packs });
      crashPoint('index-written');
      const { generationBefore, generationAfter } = this.catalog.addIndexSegment(
        indexId,
        packs.map((p) => ({ id: p.id.toString('hex'), size: p.size, entries: p.entries })),
      );
      this.#knownGeneration = generationBefore === this.#knownGeneration ? generationAfter : null;
    });
  }

  async run(): Promise<BackupResult> {
    try {
      return await this.#run();
    } finally {
      this.cacheUpdate.discard();
      await this.#closeListers();
    }
  }

  async #run(): Promise<BackupResult> {
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

    const signal = options.signal;
    const onAbort = () => this.#abort.abort(signal!.reason);
    if (signal?.aborted) throw signal.reason;
    signal?.addEventListener('abort', onAbort, { once: true });
    let rootTree: string;
    this.#walk ??= startTreeWalk(this.root, options.exclude ?? [], { signal: this.#abort.signal, inProcess: options.workers === 0 });
    let scan = Promise.resolve();
    if (!parentRow) {
      // A first backup reads everything: start the workers now, and count what there is meanwhile. Its
      // walk waits on the pipeline, so the lister need not run far ahead of it.
      this.#pipeline = this.#startPipeline();
      void this.#walk.feed.then((feed) => feed.narrow(FIRST_BACKUP_AHEAD_ENTRIES), () => {});
      scan = this.#scanTotals();
      scan.catch(() => {});
    }
    try {
      const root = await this.#dir(this.root, '');
      await this.#closeListers(); // the walk is over: only the pipeline's work remains
      await this.#submits;
      if (this.#pipeline) (await this.#pipeline).stage.flush();
      rootTree = await root.tree;
      this.progress.phase = 'committing';
      this.#report(true);
      await this.packer.flush();
      this.#writeIndex();
      await this.#indexWrites;
    } catch (err) {
      this.#abort.abort(err);
      const pipeline = await this.#pipeline?.catch(() => null);
      pipeline?.stage.fail(err);
      await this.packer.abandon();
      await this.#indexWrites.catch(() => {});
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      await (await this.#pipeline?.catch(() => null))?.workers.close();
    }
    await scan.catch(() => {});
    this.stats.storedBytes = this.packer.bytesWritten;
    const warnings = this.warnings.sort((a, b) => a.seq - b.seq).map((w) => w.text);
    this.stats.warnings = warnings.length;
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
      warnings,
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
      this.cacheUpdate.commit(this.walkedDirs);
    });
    // The dedup set now holds every blob recorded (this run's are all indexed): saved, unless another
    // process recorded or forgot blobs meanwhile, the next backup reads it in a few ms instead of the index.
    if (this.#knownGeneration !== null && this.catalog.blobGeneration() === this.#knownGeneration) this.catalog.saveKnownBlobIds(this.known, this.#knownGeneration);
    return { id, manifest };
  }

  /** The stage that feeds and drains the workers, started (workers, one byte budget each) on first use. */
  #stage(): Promise<BackupStage> {
    this.#pipeline ??= this.#startPipeline();
    return this.#pipeline.then((p) => (this.#readyStage = p.stage));
  }

  async #startPipeline(): Promise<{ stage: BackupStage; workers: WorkerPool }> {
    const { pool } = this;
    const params = pool.description.chunker;
    const chunker = { params: { min: params.min, avg: params.avg, max: params.max }, gear: gearTable(pool.keys.chunkerKey) };
    // Each worker may have a few average chunks sealed and not yet packed, so it can seal while the
    // main thread packs (a bigger chunk waits until the worker has nothing outstanding).
    const budgetBytes = Math.max(1024 * 1024, Math.min(8 * 1024 * 1024, 8 * params.avg));
    const count = this.options.workers ?? defaultWorkerCount();
    const budgets = Array.from({ length: Math.max(1, count) }, () => createBudget(budgetBytes));
    const workers = await startWorkers(
      count,
      (i) => ({ encKey: pool.keys.encKey, idKey: pool.keys.idKey, chunker, budget: budgets[i]!, known: this.known.table() }),
      this.#abort.signal,
    );
    const stage = new BackupStage({
      pool: workers,
      budgets: budgets.map((b) => new ByteBudget(b)),
      known: this.known,
      packer: this.packer,
      smallFile: params.min,
      onChunk: (raw, isNew) => {
        this.progress.bytes += raw;
        if (isNew) {
          this.stats.newBlobs++;
          this.stats.newBytes += raw;
          this.progress.newBytes += raw;
        }
        this.#report();
      },
    });
    return { stage, workers };
  }

  #lastReport = 0;
  #report(force = false): void {
    if (!this.options.onProgress) return;
    const now = this.options.clock.now();
    if (!force && now - this.#lastReport < 100) return;
    this.#lastReport = now;
    this.options.onProgress({ ...this.progress });
  }

  #warn(relPath: string, message: string, seq = this.#seq): void {
    const shown = relPath || '.';
    this.warnings.push({ seq, text: `${shown}: ${message}` });
    this.options.onFileError?.(shown, message);
  }

  /**
   * Counts files and bytes concurrently with the backup, so progress can show an ETA on a first
   * backup. Runs in a thread of its own (a second lstat of every file, with its garbage, kept off this
   * thread), which ends with the count: in a pipeline worker it held that worker's first backup tasks
   * back for as long as the count took (~1.7 s for 53k files on a cold cache, measured).
   */
  async #scanTotals(): Promise<void> {
    this.progress.phase = 'scanning';
    const counter = await startListers(1, { exclude: this.options.exclude ?? [] }, this.#abort.signal);
    let totals: { files: number; bytes: number };
    try {
      totals = await counter.run<{ files: number; bytes: number }>(0, 'count-tree', { root: this.root });
    } finally {
      await counter.close();
    }
    this.progress.totalFiles = totals.files;
    this.progress.totalBytes = totals.bytes;
    if (this.progress.phase === 'scanning') this.progress.phase = 'backing up';
  }

  /**
   * A directory's listing (sorted, exclusions dropped) with the lstat of its entries, from the lister
   * thread's walk. Rejects only when the lister itself fails; an unreadable directory or entry is in
   * the listing.
   */
  async #scan(abs: string, rel: string): Promise<Scan> {
    const listing = await (await this.#walk!.feed).next(rel);
    const prefix = abs.endsWith('/') ? abs : `${abs}/`;
    const entries = listing.names.map((name, i): ScanEntry => {
      const st = entryAt(listing, i);
      return { name, rel: rel ? `${rel}/${name}` : name, abs: prefix + name, st, err: st ? null : failedError(listing, i) };
    });
    return { entries, error: listing.error ? deserializeError(listing.error) : null };
  }

  async #closeListers(): Promise<void> {
    const walk = this.#walk;
    this.#walk = null;
    await walk?.close();
  }

  /**
   * Walks a directory: every file in it is handed to the pipeline (or skipped by the cache) and every
   * subdirectory walked, in sorted order, before this resolves. `tree` resolves with the directory's
   * tree id once everything under it is stored.
   */
  async #dir(abs: string, rel: string): Promise<{ tree: Promise<string> }> {
    throwIfAborted(this.#abort.signal);
    await this.#yieldToEvents();
    this.stats.dirs++;
    const { entries, error } = await this.#scan(abs, rel);
    // This directory's cache entries: each file puts its own in `next` (kept or new); what is not
    // there once all are done (gone, unreadable, changed while read) is dropped.
    this.walkedDirs.add(rel);
    const cache: DirCache = { dir: rel, old: this.catalog.fileCacheDir(this.cacheSource, rel), next: new Map(), changed: false };
    if (error) this.#warn(rel, `cannot list directory: ${errCode(error)}`, ++this.#seq);
    const nodes: PendingNode[] = [];
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const seq = ++this.#seq;
      const cst = e.st;
      if (!cst) {
        this.#warn(e.rel, `cannot read metadata: ${errCode(e.err)}`, seq);
        continue;
      }
      const meta = { name: e.name, mode: cst.mode, uid: cst.uid, gid: cst.gid, mtimeNs: cst.mtimeNs.toString() };
      if (cst.kind === 'dir') {
        const sub = await this.#dir(e.abs, e.rel);
        nodes.push(quiet(sub.tree.then((subtree): TreeNode => ({ ...meta, type: 'dir', subtree }))));
      } else if (cst.kind === 'file') {
        nodes.push((await this.#file(e.abs, e.rel, cst, meta, seq, cache)).node);
      } else if (cst.kind === 'symlink') {
        try {
          const target = await fs.readlink(e.abs);
          nodes.push({ ...meta, type: 'symlink', target });
          this.stats.symlinks++;
        } catch (err) {
          this.#warn(e.rel, `cannot read symlink: ${errCode(err)}`, seq);
        }
      } else {
        this.#warn(e.rel, `skipped: a ${cst.kind} cannot be backed up`, seq);
      }
    }
    const tree = quiet(
      Promise.all(nodes).then((done) => {
        if (cache.changed || cache.next.size !== cache.old.size) this.cacheUpdate.putDir(rel, cache.next);
        return this.#storeTree(done.filter((n): n is TreeNode => n !== null));
      }),
    );
    return { tree };
  }

  /**
   * Lets the event loop run (messages from the workers, pack writes, a batch of small files waiting
   * to go) once the walk has held the thread for WALK_SLICE_MS. The walk itself only waits on promises:
   * with the lister far ahead it can run for a second without a turn of the event loop, while the
   * workers sit ready with nothing to do (measured on an incremental backup: 0.6 s of both idle).
   */
  async #yieldToEvents(): Promise<void> {
    const now = performance.now();
    if (now - this.#sliceStart < WALK_SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#sliceStart = performance.now();
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

  /** Hands a file to the pipeline unless the cache or an earlier hard link already has its content. */
  async #file(abs: string, rel: string, st: EntryStat, meta: Omit<TreeNode, 'type'>, seq: number, cache: DirCache): Promise<{ node: PendingNode }> {
    const size = Number(st.size);
    const node: TreeNode = { name: meta.name, type: 'file', mode: meta.mode, uid: meta.uid, gid: meta.gid, mtimeNs: meta.mtimeNs, size, content: [] };
    this.progress.currentPath = rel;
    const linkKey = st.nlink > 1n ? `${st.dev}:${st.ino}` : null;
    if (linkKey) {
      const seen = this.hardlinks.get(linkKey);
      if (seen) {
        const later = quiet(
          seen.done.then(async (first) => {
            if (!first) return (await this.#read(abs, rel, st, node, seq, linkKey, cache)).node; // the first link could not be read: this one stands alone
            // (A later link is never cached.)
            node.linkGroup = seen.relPath;
            node.content = first.content;
            node.size = first.size;
            this.stats.files++;
            return node;
          }),
        );
        return { node: later };
      }
    }
    const cached = cache.old.get(meta.name);
    if (cached && fileCacheMatches(cached, st) && this.#allKnown(cached)) {
      node.content = fileCacheContent(cached);
      cache.next.set(meta.name, cached);
      if (linkKey) {
        node.linkGroup = rel;
        this.hardlinks.set(linkKey, { relPath: rel, done: Promise.resolve({ content: node.content, size }) });
      }
      this.#counted(node);
      return { node };
    }
    return this.#read(abs, rel, st, node, seq, linkKey, cache);
  }

  /** Queues a file for reading (waiting while the pipeline is full); the node completes when its content is stored. */
  async #read(abs: string, rel: string, st: EntryStat, node: TreeNode, seq: number, linkKey: string | null, cache: DirCache): Promise<{ node: Promise<TreeNode | null> }> {
    const size = Number(st.size);
    // Submitted in walk order. While the workers start (~0.3 s, on the first file an incremental
    // backup reads), the walk goes on through up to EARLY_SUBMITS files instead of waiting; after
    // that, each file waits until the pipeline has room for it (backpressure).
    const submitted = quiet(this.#submits.then(async () => (await this.#stage()).submit(abs, size)));
    this.#submits = submitted;
    if (this.#readyStage || ++this.#earlySubmits > EARLY_SUBMITS) await submitted;
    const done = quiet(submitted.then(({ outcome }) => outcome).then((o) => this.#readDone(rel, st, node, seq, o, cache)));
    if (linkKey) {
      node.linkGroup = rel;
      this.hardlinks.set(linkKey, { relPath: rel, done: done.then((n) => (n ? { content: n.content!, size: n.size! } : null)) });
    }
    return { node: done };
  }

  #readDone(rel: string, before: EntryStat, node: TreeNode, seq: number, o: FileOutcome, cache: DirCache): TreeNode | null {
    if (o.error) {
      this.#warn(rel, o.error, seq);
      return null;
    }
    this.stats.filesRead++;
    this.stats.bytesRead += o.size;
    const after = o.after!;
    const changed = after.size !== before.size || after.mtimeNs !== before.mtimeNs || BigInt(o.size) !== after.size || after.ino !== before.ino;
    if (changed) this.#warn(rel, 'changed while it was being read; the recovery point holds the content as read', seq);
    node.content = o.content;
    node.size = o.size;
    if (!changed) {
      cache.next.set(node.name, fileCacheData({ size: before.size, mtimeNs: before.mtimeNs, ctimeNs: before.ctimeNs, inode: before.ino, content: o.content }));
      cache.changed = true;
    }
    this.stats.files++;
    this.stats.bytes += o.size;
    this.progress.files++;
    this.#report();
    return node;
  }

  /** True when every content id of a cached entry is still in the pool. */
  #allKnown(data: Buffer): boolean {
    for (let off = FILE_CACHE_HEADER; off < data.length; off += 32) if (!this.known.hasAt(data, off)) return false;
    return true;
  }

  /** Counts a file whose content came from the cache. */
  #counted(node: TreeNode): void {
    this.stats.files++;
    this.stats.bytes += node.size!;
    this.progress.files++;
    this.progress.bytes += node.size!;
    this.#report();
  }
}

/** Marks a promise as handled (its rejection is reported by whoever awaits it), and returns it. */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** The file-metadata cache is kept per protection group and data source. */
function cacheKey(options: { group: string; source: string }): string {
  return `${options.group}\u0000${options.source}`;
}

function errCode(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code} (${e.message.replace(/^[A-Z]+: /, '')})` : String((err as Error).message ?? err);
}
