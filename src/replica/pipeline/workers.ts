// Starting the replica's pipeline workers: threads running worker.ts when running compiled, the same
// handlers in-process when running from TypeScript source (tests), or when asked for none.
import { availableParallelism } from 'node:os';
import type { ListerInit } from './list-tasks.js';
import type { WorkerInit } from './tasks.js';
import { WorkerPool, type LaunchedPool, type SpareWorkers, type WorkerPoolOptions } from './worker-pool.js';

/** Worker threads used when a job does not say: one per core. */
export function defaultWorkerCount(): number {
  return Math.max(1, availableParallelism());
}

/**
 * Starts `count` workers (0: one, served in-process; from source, all are in-process) with `init(i)` each. The caller closes the pool
 * (in a `finally`); aborting `signal` ends the workers early.
 */
export async function startWorkers(count: number, init: (index: number) => WorkerInit, signal?: AbortSignal, spare?: SpareWorkers | null): Promise<WorkerPool> {
  const fitting = fittingSpare(spare, count, WORKER);
  if (fitting) return fitting.start(init, signal).ready;
  return launchPool(count, init, signal, WORKER).ready;
}

/**
 * Pipeline workers started before their job knows their init (the keys: the CLI starts them while the
 * passphrase's scrypt runs, so that they have booted when the job needs them). `startWorkers` takes
 * them over when given them and they are what it would start; they are closed otherwise.
 */
export function spareWorkers(count: number): SpareWorkers {
  return WorkerPool.spare({ size: Math.max(1, count), ...entryOptions(count, WORKER) });
}

/**
 * `spare`, if it is still available and is the pool of `count` threads running `entry` that would be
 * started; else null, and a spare that does not fit is closed.
 */
function fittingSpare(spare: SpareWorkers | null | undefined, count: number, entry: PoolEntry): SpareWorkers | null {
  if (!spare?.available) return null;
  if (spare.size === Math.max(1, count) && spare.inProcess === !('script' in entryOptions(count, entry))) return spare;
  void spare.close();
  return null;
}

/** What a pool's threads run: a script when running compiled, else the same handlers served in-process. */
interface PoolEntry {
  script: string;
  load: NonNullable<WorkerPoolOptions['load']>;
}

const WORKER: PoolEntry = { script: './worker.js', load: () => import('./tasks.js') };
const LISTER: PoolEntry = { script: './list-worker.js', load: () => import('./list-tasks.js') };

/**
 * `count` threads running `entry.script` when running compiled and `count` > 0, else one served
 * in-process from `entry.load`; not waited for (WorkerPool.launch).
 */
function launchPool(count: number, init: (index: number) => unknown, signal: AbortSignal | undefined, entry: PoolEntry): LaunchedPool {
  return WorkerPool.launch({ size: Math.max(1, count), init, ...(signal ? { signal } : {}), ...entryOptions(count, entry) });
}

/** Threads running the compiled script, or the handlers served in-process. */
function entryOptions(count: number, entry: PoolEntry): { script: URL } | { load: PoolEntry['load'] } {
  const compiled = import.meta.url.endsWith('.js');
  return compiled && count > 0 ? { script: new URL(entry.script, import.meta.url) } : { load: entry.load };
}

/**
 * Starts workers as `startWorkers` does, without waiting for them: they boot (a thread and its modules
 * each, ~0.2 s) while the caller does other work, then `ready` gives the pool. `close()` closes it
 * whether or not it was ever awaited, and whether or not it started; call it in a `finally`.
 */
export function startWorkersEarly(
  count: number,
  init: (index: number) => WorkerInit,
  signal?: AbortSignal,
  spare?: SpareWorkers | null,
): EarlyPool {
  return earlyPool(startWorkers(count, init, signal, spare));
}

export interface EarlyPool {
  ready: Promise<WorkerPool>;
  /** Closes the pool once started; never rejects (a start that failed is reported through `ready`). */
  close: () => Promise<void>;
}

/** A pool being started, as `startWorkersEarly` hands it out. */
export function earlyPool(ready: Promise<WorkerPool>): EarlyPool {
  ready.catch(() => {}); // reported to whoever awaits `ready`
  return {
    ready,
    close: () =>
      ready.then(
        (w) => w.close(),
        () => {},
      ),
  };
}

/**
 * Starts `count` lister threads (list-worker.ts: directory listings and counts, no keys; 0: one,
 * in-process, as from source). The caller closes the pool.
 */
export function startListers(count: number, init: ListerInit, signal?: AbortSignal): Promise<WorkerPool> {
  return launchPool(count, () => init, signal, LISTER).ready;
}

/**
 * `startListers` without waiting for the threads to boot: a task run on `pool` at once starts as soon as
 * its thread is up. `spare` (one lister from `spareLister`) is used instead of a new thread when it is
 * what would be started, and closed otherwise.
 */
export function launchListers(count: number, init: ListerInit, signal?: AbortSignal, spare?: SpareWorkers | null): LaunchedPool {
  return fittingSpare(spare, count, LISTER)?.start(() => init, signal) ?? launchPool(count, () => init, signal, LISTER);
}

/**
 * One lister thread started before its walk is known (the CLI starts it first thing for a backup, so
 * that it boots while the command's modules load and its config is read): `launchListers` takes it
 * over. Whoever holds it closes it if it is never taken.
 */
export function spareLister(): SpareWorkers {
  return WorkerPool.spare({ size: 1, ...entryOptions(1, LISTER) });
}
