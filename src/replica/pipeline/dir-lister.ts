// Directory listings for the backup walk: a directory's names (sorted) and the lstat of each entry.
//
// While the file system answers from its cache, the calls are synchronous: a few µs each, against
// ~10 µs of main-thread time for each call through the promise API (measured: 56k lstat calls take
// 0.15 s synchronously, 0.57 s with 32 promises in flight, on a warm cache). A slice of calls that
// turns out slow (metadata not cached: the disk answers) switches the lister to the promise API with
// up to `concurrency` calls in flight, so a cold walk keeps several requests in flight; every
// `probeEvery` directories it tries the synchronous path again. Work is done in slices with a turn
// of the event loop between them, so a huge directory never holds the thread for long.
import { lstatSync, promises as fs, readdirSync, type BigIntStats, type Stats } from 'node:fs';
import { Limiter } from './limit.js';

export interface Listing<S = BigIntStats> {
  /** Names kept by the filter, sorted (by UTF-16 code units, as Array.prototype.sort does). */
  names: string[];
  /** `stats[i]` is the lstat of `names[i]`, or null when it failed with `errors[i]`. */
  stats: (S | null)[];
  errors: unknown[];
  /** Set when the directory itself could not be read (then `names` is empty). */
  error: unknown;
}

export interface DirListerOptions {
  /** Calls in flight when the file system is slow. Default 32. */
  concurrency?: number;
  /** Mean µs per synchronous call beyond which the file system counts as slow. Default 200. */
  slowMicros?: number;
  /** Directories listed with the promise API between two probes of the synchronous path. Default 64. */
  probeEvery?: number;
  /** lstat with nanosecond times and exact inode numbers (BigIntStats; the default), or plain Stats. */
  bigint?: boolean;
}

const SLICE = 256;
const WINDOW = 64;

export class DirLister<S extends BigIntStats | Stats = BigIntStats> {
  readonly #limit: Limiter;
  readonly #slowMicros: number;
  readonly #probeEvery: number;
  readonly #bigint: boolean;
  #sync = true;
  #asyncDirs = 0;
  // Synchronous calls observed since the last judgement (judged every WINDOW calls, so one preempted
  // call in a small directory does not count as a slow disk).
  #winMs = 0;
  #winCalls = 0;

  constructor(options: DirListerOptions = {}) {
    this.#limit = new Limiter(options.concurrency ?? 32);
    this.#slowMicros = options.slowMicros ?? 200;
    this.#probeEvery = options.probeEvery ?? 64;
    this.#bigint = options.bigint ?? true;
  }

  /** True while calls are made synchronously (the file system answers fast). */
  get synchronous(): boolean {
    return this.#sync;
  }

  /** Lists `dir` (an absolute path); `keep(name)` drops entries before they are looked at. Never rejects. */
  async list(dir: string, keep?: (name: string) => boolean): Promise<Listing<S>> {
    if (!this.#sync && ++this.#asyncDirs % this.#probeEvery === 0) {
      // Probe: list this one synchronously again, and judge on its calls alone.
      this.#sync = true;
      this.#winMs = 0;
      this.#winCalls = 0;
    }
    let names: string[];
    try {
      if (this.#sync) {
        const t0 = performance.now();
        names = readdirSync(dir);
        this.#observe(t0, 1);
      } else {
        names = await this.#limit.run(() => fs.readdir(dir));
      }
    } catch (err) {
      return { names: [], stats: [], errors: [], error: err };
    }
    if (keep) names = names.filter(keep);
    names.sort();
    const bigint = this.#bigint;
    const stats = new Array<S | null>(names.length).fill(null);
    const errors = new Array<unknown>(names.length).fill(null);
    const prefix = dir.endsWith('/') ? dir : `${dir}/`;
    for (let start = 0; start < names.length; start += SLICE) {
      const end = Math.min(names.length, start + SLICE);
      if (this.#sync) {
        const t0 = performance.now();
        for (let i = start; i < end; i++) {
          try {
            stats[i] = lstatSync(prefix + names[i]!, { bigint }) as S;
          } catch (err) {
            errors[i] = err;
          }
        }
        this.#observe(t0, end - start);
        if (end < names.length) await new Promise<void>((resolve) => setImmediate(resolve));
      } else {
        const slice: Promise<void>[] = [];
        for (let i = start; i < end; i++) {
          slice.push(
            this.#limit.run(() => fs.lstat(prefix + names[i]!, { bigint })).then(
              (st) => {
                stats[i] = st as S;
              },
              (err: unknown) => {
                errors[i] = err;
              },
            ),
          );
        }
        await Promise.all(slice);
      }
    }
    return { names, stats, errors, error: null };
  }

  #observe(t0: number, calls: number): void {
    this.#winMs += performance.now() - t0;
    this.#winCalls += calls;
    if (this.#winCalls < WINDOW) return;
    if ((this.#winMs * 1000) / this.#winCalls > this.#slowMicros) this.#sync = false;
    this.#winMs = 0;
    this.#winCalls = 0;
  }
}
