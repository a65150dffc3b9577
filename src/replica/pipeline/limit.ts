// Bounds on operations in flight: a limiter for one kind of operation (directory listings, pack reads),
// and an order-keeping parallel map over it. (The backup's bounded stages are the byte budget of each
// worker, byte-budget.ts, and the submit window of backup-stage.ts.)

/**
 * Runs at most `limit` operations at once; the others wait in FIFO order. `run` settles as its
 * operation does.
 */
export class Limiter {
  readonly limit: number;
  #active = 0;
  #waiting: (() => void)[] = [];

  constructor(limit: number) {
    if (!(limit >= 1)) throw new RangeError('limit must be at least 1');
    this.limit = limit;
  }

  get active(): number {
    return this.#active;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active++;
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    }
  }
}

/**
 * Maps `items` through `fn` with at most `concurrency` calls in flight; the results keep the order of
 * `items`. Rejects with the first error (calls already started are still awaited, none is started after).
 */
export async function mapLimit<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
  return out;
}
