// What every job needs, opened from the config: the pool store, the pool (with its passphrase), the
// catalog, a clock and a logger. Opened lazily so that commands open only what they use.
import { hostname } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { Catalog } from '../catalog/catalog.js';
import { processClock, type Clock } from '../clock.js';
import type { SourceConfig, StrataConfig } from '../config/types.js';
import { readPassphraseFile } from '../crypto/passphrase.js';
import { isWalkOf, startTreeWalk, type TreeWalk } from '../replica/pipeline/walk-feed.js';
import type { SpareWorkers } from '../replica/pipeline/worker-pool.js';
import { defaultWorkerCount, spareWorkers } from '../replica/pipeline/workers.js';
import { syncCatalog } from '../replica/catalog-sync.js';
import { Pool } from '../replica/pool.js';
import { DirStore } from '../store/dir-store.js';
import { backupSources, listableEarly, sourceExclude, type BackupRequest } from './backup-sources.js';
import { createLogger } from './log.js';
import { readAhead } from './readahead.js';

export interface ContextOptions {
  clock?: Clock;
  /** Receives warnings meant for the user (a readable passphrase file, …). */
  warn?: (message: string) => void;
  logName?: string;
  /** A lister thread started before the context (cli.ts, for a backup): the backup's walk runs on it. */
  spareLister?: SpareWorkers | null;
}

/** A catalog larger than this is read ahead only this far (a cache hint, not worth more I/O). */
const CATALOG_READ_AHEAD_BYTES = 256 * 1024 * 1024;

export class AgentContext {
  readonly config: StrataConfig;
  readonly clock: Clock;
  readonly host = hostname();
  readonly log: Logger;
  readonly warn: (message: string) => void;
  #catalog: Catalog | null = null;
  #pool: Pool | null = null;
  #opening: Promise<Pool> | null = null;
  #poolStore: DirStore | null = null;
  #earlyWalk: TreeWalk | null = null;
  #spareWorkers: SpareWorkers | null = null;
  #spareLister: SpareWorkers | null;
  #catalogReadAhead: AbortController | null = null;

  constructor(config: StrataConfig, options: ContextOptions = {}) {
    this.config = config;
    this.clock = options.clock ?? processClock();
    this.log = createLogger(config.stateDir, options.logName ?? 'strata');
    this.warn = options.warn ?? (() => {});
    this.#spareLister = options.spareLister ?? null;
  }

  get catalogFile(): string {
    return path.join(this.config.stateDir, 'catalog.db');
  }

  get poolStore(): DirStore {
    return (this.#poolStore ??= new DirStore(this.config.pool));
  }

  catalog(): Catalog {
    return (this.#catalog ??= Catalog.open(this.catalogFile));
  }

  passphrase(): string {
    const { passphrase, warning } = readPassphraseFile(this.config.passphraseFile);
    if (warning) this.warn(warning);
    return passphrase;
  }

  async pool(): Promise<Pool> {
    if (this.#pool) return this.#pool;
    this.#opening ??= (async () => Pool.open(this.poolStore, this.passphrase()))().then(
      (pool) => (this.#pool ??= pool),
      (err: unknown) => {
        this.#opening = null;
        throw err;
      },
    );
    return this.#opening;
  }

  /**
   * Starts opening the pool (the key slot's scrypt runs on the thread pool, ~0.2 s) so that it overlaps
   * whatever the caller does next (loading the job's modules, the gate, the catalog). A failure is
   * reported by the next `pool()`, not here.
   */
  prefetchPool(): void {
    if (this.#pool || this.#opening) return;
    this.pool().catch(() => {});
  }

  /** Opens the pool and brings the catalog in line with it (cheap when nothing changed). */
  async poolAndCatalog(): Promise<{ pool: Pool; catalog: Catalog }> {
    const opening = this.pool();
    opening.catch(() => {});
    const catalog = this.catalog(); // opened while the key is derived
    const pool = await opening;
    const sync = await syncCatalog(pool, catalog);
    if (sync.addedSegments + sync.removedSegments + sync.addedPoints + sync.removedPoints > 0) this.log.info({ sync }, 'catalog synced with the pool');
    for (const u of sync.unreadable) this.log.warn({ object: u }, 'unreadable object in the pool');
    return { pool, catalog };
  }

  /**
   * Starts listing the tree of a backup's first source now, on a lister thread, so that it overlaps
   * the rest of the start-up (the job's modules, the gate, the key derivation). Only where that is safe
   * (backup-sources.ts listableEarly); a request in error is left for the job to report. The backup
   * takes the walk over (takeEarlyWalk); `close` ends one never taken.
   */
  prefetchBackupWalk(request: BackupRequest): void {
    if (this.#earlyWalk) return;
    let first: SourceConfig | undefined;
    try {
      first = backupSources(this.config, request).sources[0];
    } catch {
      return;
    }
    if (first && listableEarly(first)) this.#earlyWalk = startTreeWalk(first.path, sourceExclude(first, request), { spare: this.takeSpareLister() });
  }

  /** The lister thread given to the context (ContextOptions.spareLister), if not taken yet (once). */
  takeSpareLister(): SpareWorkers | null {
    const spare = this.#spareLister;
    this.#spareLister = null;
    return spare;
  }

  /** The walk `prefetchBackupWalk` started, if it is of `root` with these exclusions (else it is ended). */
  takeEarlyWalk(root: string, exclude: readonly string[]): TreeWalk | null {
    const walk = this.#earlyWalk;
    this.#earlyWalk = null;
    if (walk && isWalkOf(walk, root, exclude)) return walk;
    void walk?.close();
    return null;
  }

  /**
   * Starts reading the catalog file through in the background (up to CATALOG_READ_AHEAD_BYTES), so that
   * a backup's walk finds its pages in the page cache: on a cold cache, its per-directory queries of the
   * file-metadata cache otherwise wait on scattered reads, on the main thread (measured: an incremental
   * backup of the 2 GiB bench corpus, 4 alternating pairs, medians 3.05 → 2.88 s with the catalog read
   * ahead of the process).
   */
  prefetchCatalog(): void {
    if (this.#catalogReadAhead) return;
    this.#catalogReadAhead = new AbortController();
    void readAhead(this.catalogFile, CATALOG_READ_AHEAD_BYTES, this.#catalogReadAhead.signal);
  }

  /**
   * Starts the pipeline's worker threads now, without their keys, so that they boot (~0.2 s: a thread
   * and its modules each) while the passphrase's scrypt runs: for a job that will use them at once (a
   * check that reads the data, a restore). The job takes them (takeSpareWorkers); `close` ends them if
   * it never does.
   */
  prefetchWorkers(): void {
    this.#spareWorkers ??= spareWorkers(defaultWorkerCount());
  }

  /** The workers `prefetchWorkers` started, if any (once). */
  takeSpareWorkers(): SpareWorkers | null {
    const spare = this.#spareWorkers;
    this.#spareWorkers = null;
    return spare;
  }

  setPool(pool: Pool): void {
    this.#pool = pool;
  }

  close(): void {
    const walk = this.#earlyWalk;
    this.#earlyWalk = null;
    void walk?.close();
    void this.takeSpareWorkers()?.close();
    void this.takeSpareLister()?.close();
    this.#catalogReadAhead?.abort();
    this.#catalog?.close();
    this.#catalog = null;
    this.log.flush?.();
  }
}
