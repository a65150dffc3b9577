// The backup walk's side of a lister thread's walk-tree task (list-tasks.ts): the listings arrive in
// the order the walk asks for them, ahead of it, and each is taken exactly once.
import type { WalkTreeTask } from './list-tasks.js';
import { WALK_AHEAD_ENTRIES, type PackedListing, type WalkBatch, type WalkCredit } from './listing.js';
import type { SpareWorkers, WorkerPool } from './worker-pool.js';
import { earlyPool, launchListers } from './workers.js';

export class WalkFeed {
  readonly #pool: WorkerPool;
  #creditEvery: number;
  readonly #queue: WalkBatch['listings'] = [];
  #head = 0;
  /** Set once the lister's task has ended: with its error, or null when it finished its walk. */
  #end: { err: unknown } | null = null;
  #uncredited = 0;
  /** Woken when a batch arrives or the task ends. */
  #wake: (() => void) | null = null;

  /** Starts walking `root` on the (one) thread of a lister pool (startListers, with the same `aheadEntries`). */
  constructor(pool: WorkerPool, root: string, aheadEntries = WALK_AHEAD_ENTRIES) {
    this.#pool = pool;
    this.#creditEvery = Math.max(1, Math.floor(aheadEntries / 4));
    const task: WalkTreeTask = { root };
    pool.run(0, 'walk-tree', task, { onPart: (batch) => this.#arrived(batch as WalkBatch) }).then(
      () => this.#ended(null),
      (err: unknown) => this.#ended(err),
    );
  }

  /**
   * The listing of the directory at `rel` (relative to the root), which must be the next one in walk
   * order: pre-order, depth first, subdirectories in the sorted order of their names.
   */
  async next(rel: string): Promise<PackedListing> {
    while (this.#head === this.#queue.length) {
      if (this.#end) throw this.#end.err ?? new Error(`the lister's walk ended before reaching ${JSON.stringify(rel)}`);
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    const { rel: got, listing } = this.#queue[this.#head]!;
    if (got !== rel) throw new Error(`the lister's walk is out of step with the backup walk (${JSON.stringify(got)} instead of ${JSON.stringify(rel)})`);
    this.#queue[this.#head++] = undefined!;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    this.#uncredited += listing.names.length + 1;
    if (this.#uncredited >= this.#creditEvery && !this.#end) {
      const credit: WalkCredit = { consumed: this.#uncredited };
      this.#pool.control(credit, 0);
      this.#uncredited = 0;
    }
    return listing;
  }

  /**
   * From now on the walk runs at most `aheadEntries` ahead (a first backup, whose walk waits on the
   * pipeline: a long queue of listings would only be held longer, ~150 bytes an entry).
   */
  narrow(aheadEntries: number): void {
    if (this.#end) return;
    const limit: WalkCredit = { aheadEntries };
    this.#pool.control(limit, 0);
    this.#creditEvery = Math.max(1, Math.floor(aheadEntries / 4));
  }

  /** Entries listed and not taken yet (bounded by the walk's `aheadEntries`, plus the largest directory). */
  get queued(): number {
    let n = 0;
    for (let i = this.#head; i < this.#queue.length; i++) n += this.#queue[i]!.listing.names.length + 1;
    return n;
  }

  #arrived(batch: WalkBatch): void {
    for (const l of batch.listings) this.#queue.push(l);
    this.#wakeUp();
  }

  #ended(err: unknown): void {
    this.#end ??= { err };
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** A source tree being listed ahead of its backup walk, by a lister thread of its own. */
export interface TreeWalk {
  readonly root: string;
  readonly exclude: readonly string[];
  readonly feed: Promise<WalkFeed>;
  /** Ends the lister thread (idempotent; call it in a `finally`). */
  close(): Promise<void>;
}

/** True when `walk` lists `root` with exactly these exclusions. */
export function isWalkOf(walk: TreeWalk, root: string, exclude: readonly string[]): boolean {
  return walk.root === root && walk.exclude.length === exclude.length && walk.exclude.every((p, i) => p === exclude[i]);
}

/**
 * Starts listing `root` (exclusions applied) on a lister thread (`inProcess`: on this one, as tests
 * and `workers: 0` do): it may start before the walk that consumes it (while the pool's key is
 * derived, say), and runs at most `WALK_AHEAD_ENTRIES` entries ahead of it. `spare`: a lister thread
 * already booting (workers.ts spareLister), used if it fits.
 */
export function startTreeWalk(
  root: string,
  exclude: readonly string[],
  options: { signal?: AbortSignal; inProcess?: boolean; aheadEntries?: number; spare?: SpareWorkers | null } = {},
): TreeWalk {
  const aheadEntries = options.aheadEntries ?? WALK_AHEAD_ENTRIES;
  const launched = launchListers(options.inProcess ? 0 : 1, { exclude: [...exclude], aheadEntries }, options.signal, options.spare);
  // The walk is asked for now: the thread starts it as soon as it is up, without waiting for this
  // thread to hear that it is (this thread is busy loading the job then; measured: 50 ms and more).
  const walkFeed = new WalkFeed(launched.pool, root, aheadEntries);
  const listers = earlyPool(launched.ready);
  const feed = listers.ready.then(() => walkFeed);
  feed.catch(() => {}); // reported to the walk that awaits it
  return { root, exclude, feed, close: listers.close };
}
