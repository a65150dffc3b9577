// The only module that reads the wall clock or starts timers: everything else takes a Clock.

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms` (rejects with the signal's reason if aborted first). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Calls `fn` every `ms` until the returned function is called. */
  every(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
  every: (ms, fn) => {
    const timer = setInterval(fn, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
};

/**
 * A clock for tests and for STRATA_FAKE_NOW: time moves only when `advance` is called
 * (sleeps resolve when their deadline is passed).
 */
export class FakeClock implements Clock {
  #now: number;
  #sleepers: { at: number; resolve: () => void }[] = [];
  #intervals: { every: number; next: number; fn: () => void }[] = [];
  constructor(start: number | Date = 0) {
    this.#now = typeof start === 'number' ? start : start.getTime();
  }
  now(): number {
    return this.#now;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const sleeper = { at: this.#now + ms, resolve };
      this.#sleepers.push(sleeper);
      signal?.addEventListener(
        'abort',
        () => {
          this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }
  every(ms: number, fn: () => void): () => void {
    const entry = { every: ms, next: this.#now + ms, fn };
    this.#intervals.push(entry);
    return () => {
      this.#intervals = this.#intervals.filter((e) => e !== entry);
    };
  }
  /** Moves time forward, waking sleepers and firing intervals whose time has come, in order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      const nextSleep = Math.min(...this.#sleepers.map((s) => s.at), Infinity);
      const nextTick = Math.min(...this.#intervals.map((i) => i.next), Infinity);
      const next = Math.min(nextSleep, nextTick);
      if (next > target) break;
      this.#now = next;
      for (const s of this.#sleepers.filter((s) => s.at <= next)) s.resolve();
      this.#sleepers = this.#sleepers.filter((s) => s.at > next);
      for (const i of this.#intervals.filter((i) => i.next <= next)) {
        i.next += i.every;
        i.fn();
      }
    }
    this.#now = target;
  }
  set(ms: number): void {
    this.advance(Math.max(0, ms - this.#now));
  }
}

/**
 * The clock the process runs on: the system clock, or, when STRATA_FAKE_NOW is set (an ISO date or
 * epoch ms; used by end-to-end tests to place a run in time), the system clock shifted to that instant.
 */
export function processClock(env: NodeJS.ProcessEnv = process.env): Clock {
  const fake = env['STRATA_FAKE_NOW'];
  if (!fake) return systemClock;
  const at = /^\d+$/.test(fake) ? Number(fake) : Date.parse(fake);
  if (!Number.isFinite(at)) return systemClock;
  const offset = at - Date.now();
  return { ...systemClock, now: () => Date.now() + offset };
}
