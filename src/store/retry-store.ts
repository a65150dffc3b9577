// Retry with exponential backoff and jitter around any object store.
import { systemClock, type Clock } from '../clock.js';
import { StrataError, throwIfAborted } from '../errors.js';
import { assertValidKey, type ByteRange, type ObjectInfo, type ObjectStore, type StoreOptions } from './object-store.js';

export type StoreOperation = 'put' | 'get' | 'stat' | 'list' | 'delete';

export interface RetryInfo {
  op: StoreOperation;
  /** The key (for list: the prefix). */
  key: string;
  /** The attempt that just failed, from 1. */
  attempt: number;
  /** How long the store waits before the next attempt. */
  delayMs: number;
  error: unknown;
}

export interface RetryCounters {
  /** Attempts made again after a transient failure. */
  retries: number;
  byOperation: Record<StoreOperation, number>;
  /** Operations that failed after their last attempt on a transient error. */
  gaveUp: number;
}

export interface RetryOptions {
  /** Sleeps between attempts. Default the system clock. */
  clock?: Clock;
  /** Attempts in all, the first included. Default 6. */
  maxAttempts?: number;
  /** The first backoff; each next one doubles, up to `maxDelayMs`. Default 500 ms. */
  baseDelayMs?: number;
  /** Default 30 s. */
  maxDelayMs?: number;
  /** Jitter source in [0, 1). Default Math.random. */
  random?: () => number;
  /** Called once before each retry's sleep, synchronously; must not throw. */
  onRetry?: (info: RetryInfo) => void;
  /** Overrides which errors are never retried. Default `isPermanentError`. */
  isPermanent?: (err: unknown) => boolean;
}

/** Error codes that no retry can fix. */
const PERMANENT_CODES = new Set([
  'STRATA_NOT_FOUND',
  'STRATA_VAULT_AUTH',
  'STRATA_INTEGRITY',
  'STRATA_VAULT_CONTAINER_MISSING',
  'EACCES',
  'EPERM',
  'EROFS',
  'EISDIR',
  'ENOTDIR',
  'ENOSPC',
  'EINVAL',
]);

/**
 * True for errors a retry cannot fix: a missing object, refused credentials, a bad range
 * (RangeError), a programming error (TypeError), damaged data (STRATA_INTEGRITY), any StrataError of
 * kind 'input', 'usage' or 'gate', and local file-system refusals (EACCES, ENOSPC, …).
 * Everything else (network, timeouts, 5xx, throttling by the service) is transient.
 */
export function isPermanentError(err: unknown): boolean {
  if (err instanceof RangeError || err instanceof TypeError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && PERMANENT_CODES.has(code)) return true;
  if (err instanceof StrataError) return err.kind !== 'failed';
  return false;
}

/**
 * An ObjectStore that retries the inner store's transient failures with exponential backoff and
 * "equal jitter" (each wait is between half and all of the doubled delay), sleeping on the clock.
 * - Permanent errors (see `isPermanentError`) and invalid keys fail at once.
 * - It never starts an attempt on an aborted signal; an abort during a backoff rejects with the
 *   signal's reason; an attempt that fails after the signal was aborted is not retried.
 * - After `maxAttempts`, the last error is thrown unchanged.
 * - `list` restarts the listing after a transient failure and skips keys it already reported, so each
 *   object is still reported once (memory: one string per listed key). The attempt count restarts
 *   whenever a listing made progress before failing.
 * Retrying is safe because the store contracts make puts atomic and replacing, and deletes idempotent.
 */
export class RetryStore implements ObjectStore {
  readonly #inner: ObjectStore;
  readonly #clock: Clock;
  readonly #maxAttempts: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #random: () => number;
  readonly #onRetry: ((info: RetryInfo) => void) | undefined;
  readonly #isPermanent: (err: unknown) => boolean;
  #counters: RetryCounters = emptyCounters();

  constructor(inner: ObjectStore, options: RetryOptions = {}) {
    this.#inner = inner;
    this.#clock = options.clock ?? systemClock;
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 6);
    this.#baseDelayMs = options.baseDelayMs ?? 500;
    this.#maxDelayMs = options.maxDelayMs ?? 30_000;
    this.#random = options.random ?? Math.random;
    this.#onRetry = options.onRetry;
    this.#isPermanent = options.isPermanent ?? isPermanentError;
  }

  get capabilities() {
    return this.#inner.capabilities;
  }

  get location(): string {
    return this.#inner.location;
  }

  /** A copy of the counters since construction (or the last `resetCounters`). */
  get counters(): RetryCounters {
    return { ...this.#counters, byOperation: { ...this.#counters.byOperation } };
  }

  /** Returns the counters and starts new ones (for per-job reports). */
  resetCounters(): RetryCounters {
    const out = this.counters;
    this.#counters = emptyCounters();
    return out;
  }

  put(key: string, data: Uint8Array, options?: StoreOptions): Promise<void> {
    return this.#run('put', key, options, () => this.#inner.put(key, data, options));
  }

  get(key: string, options?: StoreOptions & { range?: ByteRange }): Promise<Buffer> {
    return this.#run('get', key, options, () => this.#inner.get(key, options));
  }

  stat(key: string, options?: StoreOptions): Promise<ObjectInfo> {
    return this.#run('stat', key, options, () => this.#inner.stat(key, options));
  }

  delete(key: string, options?: StoreOptions): Promise<void> {
    return this.#run('delete', key, options, () => this.#inner.delete(key, options));
  }

  async *list(prefix: string, options?: StoreOptions): AsyncIterable<ObjectInfo> {
    const seen = new Set<string>();
    let attempt = 1;
    for (;;) {
      throwIfAborted(options?.signal);
      let progressed = false;
      try {
        for await (const info of this.#inner.list(prefix, options)) {
          if (seen.has(info.key)) continue;
          seen.add(info.key);
          progressed = true;
          yield info;
        }
        return;
      } catch (err) {
        if (progressed) attempt = 1;
        await this.#afterFailure('list', prefix, attempt, err, options?.signal);
        attempt++;
      }
    }
  }

  async #run<T>(op: StoreOperation, key: string, options: StoreOptions | undefined, attemptOnce: () => Promise<T>): Promise<T> {
    assertValidKey(key);
    for (let attempt = 1; ; attempt++) {
      throwIfAborted(options?.signal);
      try {
        return await attemptOnce();
      } catch (err) {
        await this.#afterFailure(op, key, attempt, err, options?.signal);
      }
    }
  }

  /** Throws `err` (or the abort reason) unless another attempt should be made; otherwise waits the backoff. */
  async #afterFailure(op: StoreOperation, key: string, attempt: number, err: unknown, signal: AbortSignal | undefined): Promise<void> {
    throwIfAborted(signal);
    if (this.#isPermanent(err)) throw err;
    if (attempt >= this.#maxAttempts) {
      this.#counters.gaveUp++;
      throw err;
    }
    const doubled = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (attempt - 1));
    const delayMs = Math.round(doubled / 2 + (this.#random() * doubled) / 2);
    this.#counters.retries++;
    this.#counters.byOperation[op]++;
    this.#onRetry?.({ op, key, attempt, delayMs, error: err });
    await this.#clock.sleep(delayMs, signal);
  }
}

function emptyCounters(): RetryCounters {
  return { retries: 0, byOperation: { put: 0, get: 0, stat: 0, list: 0, delete: 0 }, gaveUp: 0 };
}
