// A byte budget shared by one producer thread and one consumer thread: a worker acquires bytes before
// it hands over a sealed blob (transferred, not copied), the main thread releases them once it has
// copied the blob into the open pack. What a worker has produced and the main thread not yet consumed
// stays under the budget: when it is spent, the worker waits (backpressure), so memory does not grow
// with the data.

const IN_USE = 0;
const ABORTED = 1;

/** Atomics.waitAsync (V8 since 8.7; not in TypeScript's ES2023 lib). */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number, timeoutMs: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

export class BudgetAbortedError extends Error {
  constructor() {
    super('byte budget aborted');
    this.name = 'AbortError';
  }
}

/** A budget of `capacity` bytes (at most 2^30), to be shared (structured-cloned) between two threads. */
export function createBudget(capacity: number): { sab: SharedArrayBuffer; capacity: number } {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 2 ** 30) throw new RangeError('budget capacity must be an integer in [1, 2^30]');
  return { sab: new SharedArrayBuffer(8), capacity };
}

export class ByteBudget {
  readonly capacity: number;
  readonly #control: Int32Array;

  constructor(budget: { sab: SharedArrayBuffer; capacity: number }) {
    this.capacity = budget.capacity;
    this.#control = new Int32Array(budget.sab);
  }

  /** Bytes acquired and not released. */
  get inUse(): number {
    return Atomics.load(this.#control, IN_USE);
  }

  /**
   * Acquires `n` bytes, waiting while they do not fit (an empty budget always admits, however big `n`
   * is). Before the first wait it calls `beforeWait` once: the producer must hand over what it holds
   * by then, or the consumer could never release anything. Throws BudgetAbortedError once the
   * consumer has aborted.
   */
  async acquire(n: number, beforeWait: () => void): Promise<void> {
    let notified = false;
    for (;;) {
      if (Atomics.load(this.#control, ABORTED) !== 0) throw new BudgetAbortedError();
      const used = Atomics.load(this.#control, IN_USE);
      if (used === 0 || used + n <= this.capacity) {
        if (Atomics.compareExchange(this.#control, IN_USE, used, used + n) === used) return;
        continue;
      }
      if (!notified) {
        notified = true;
        beforeWait();
        continue; // the handover may have been consumed synchronously (in-process consumer)
      }
      const w = waitAsync(this.#control, IN_USE, used, 1000);
      if (w.async) await w.value;
    }
  }

  /** Gives back `n` bytes and wakes a waiting producer. */
  release(n: number): void {
    if (n <= 0) return;
    Atomics.sub(this.#control, IN_USE, n);
    Atomics.notify(this.#control, IN_USE);
  }

  /** Makes the producer's current and later `acquire` calls throw BudgetAbortedError. */
  abort(): void {
    Atomics.store(this.#control, ABORTED, 1);
    Atomics.notify(this.#control, IN_USE);
  }
}
