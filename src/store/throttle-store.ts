// Bandwidth throttling around any object store: token buckets for upload (put) and download (get) bytes.
import { systemClock, type Clock } from '../clock.js';
import { throwIfAborted } from '../errors.js';
import { bytesPerSecondAt, type BandwidthSchedule } from './bandwidth-schedule.js';
import type { ByteRange, ObjectInfo, ObjectStore, StoreOptions } from './object-store.js';

/**
 * Where a bucket reads its rate, in bytes per second, each time it is used: a constant, a schedule
 * (work hours / other hours), or a function of the time. Infinity, 0 and undefined mean unlimited.
 */
export type RateSource = number | BandwidthSchedule | ((now: number) => number) | undefined;

export interface ThrottleOptions {
  /** Limits put bytes. */
  upload?: RateSource;
  /** Limits get bytes. */
  download?: RateSource;
  clock?: Clock;
  /** Bytes a bucket may save up while idle, as time at its current rate. Default 1000 ms. */
  burstMs?: number;
  /** The longest single wait before the rate is read again. Default 1000 ms. */
  maxWaitMs?: number;
}

export interface ThrottleCounters {
  uploadedBytes: number;
  downloadedBytes: number;
  /** Clock time callers spent waiting for their turn or for tokens. */
  waitedMs: number;
}

/**
 * A token bucket whose rate is re-read from its source at every refill (so a schedule's change of
 * window takes effect within `maxWaitMs`). Takers are served in order; a take larger than the burst
 * is allowed and waits until the bucket has paid it off. Tokens of an aborted take are returned.
 */
export class TokenBucket {
  readonly #rate: (now: number) => number;
  readonly #clock: Clock;
  readonly #burstMs: number;
  readonly #maxWaitMs: number;
  /** Starts full: the first burst goes at once. */
  #tokens = Infinity;
  #last: number;
  #queue: Promise<void> = Promise.resolve();

  constructor(source: RateSource, options: { clock: Clock; burstMs: number; maxWaitMs: number }) {
    this.#rate = rateFunction(source);
    this.#clock = options.clock;
    this.#burstMs = options.burstMs;
    this.#maxWaitMs = options.maxWaitMs;
    this.#last = options.clock.now();
  }

  /** The rate now, in bytes per second (Infinity when unlimited). */
  rate(): number {
    return this.#rate(this.#clock.now());
  }

  /**
   * Resolves when `bytes` may be sent. Rejects with the signal's reason if it is aborted while
   * waiting (promptly, even while earlier takers are still being served).
   */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    if (bytes <= 0) return;
    const previous = this.#queue;
    let release!: () => void;
    this.#queue = new Promise((resolve) => (release = resolve));
    try {
      await abortable(previous, signal);
      await this.#pay(bytes, signal);
    } finally {
      // Served or abandoned: either way the next taker's turn comes once the previous one finished.
      previous.then(release, release);
    }
  }

  async #pay(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    this.#refill();
    if (this.#rate(this.#clock.now()) === Infinity) return;
    this.#tokens -= bytes;
    try {
      while (this.#tokens < 0) {
        const rate = this.#rate(this.#clock.now());
        if (rate === Infinity) {
          this.#tokens = Infinity;
          return;
        }
        const waitMs = Math.min(this.#maxWaitMs, Math.max(1, Math.ceil((-this.#tokens * 1000) / rate)));
        await this.#clock.sleep(waitMs, signal);
        this.#refill();
      }
    } catch (err) {
      this.#tokens += bytes;
      throw err;
    }
  }

  #refill(): void {
    const now = this.#clock.now();
    const rate = this.#rate(now);
    const elapsed = Math.max(0, now - this.#last);
    this.#last = now;
    if (rate === Infinity) {
      this.#tokens = Infinity;
      return;
    }
    const cap = (rate * this.#burstMs) / 1000;
    this.#tokens = Math.min(cap, this.#tokens + (rate * elapsed) / 1000);
  }
}

/**
 * An ObjectStore that limits the bytes put and got per second. A put waits for its bytes before it
 * starts; a ranged get waits before it starts; a whole-object get (size unknown beforehand) pays after
 * the bytes arrive and resolves once paid. stat, list and delete are not limited.
 */
export class ThrottleStore implements ObjectStore {
  readonly #inner: ObjectStore;
  readonly #clock: Clock;
  readonly upload: TokenBucket;
  readonly download: TokenBucket;
  readonly #counters: ThrottleCounters = { uploadedBytes: 0, downloadedBytes: 0, waitedMs: 0 };

  constructor(inner: ObjectStore, options: ThrottleOptions = {}) {
    this.#inner = inner;
    this.#clock = options.clock ?? systemClock;
    const bucket = { clock: this.#clock, burstMs: options.burstMs ?? 1000, maxWaitMs: options.maxWaitMs ?? 1000 };
    this.upload = new TokenBucket(options.upload, bucket);
    this.download = new TokenBucket(options.download, bucket);
  }

  get capabilities() {
    return this.#inner.capabilities;
  }

  get location(): string {
    return this.#inner.location;
  }

  get counters(): ThrottleCounters {
    return { ...this.#counters };
  }

  async put(key: string, data: Uint8Array, options?: StoreOptions): Promise<void> {
    await this.#wait(this.upload, data.byteLength, options?.signal);
    await this.#inner.put(key, data, options);
    this.#counters.uploadedBytes += data.byteLength;
  }

  async get(key: string, options?: StoreOptions & { range?: ByteRange }): Promise<Buffer> {
    const range = options?.range;
    if (range) await this.#wait(this.download, range.length, options?.signal);
    const data = await this.#inner.get(key, options);
    if (!range) await this.#wait(this.download, data.length, options?.signal);
    this.#counters.downloadedBytes += data.length;
    return data;
  }

  stat(key: string, options?: StoreOptions): Promise<ObjectInfo> {
    return this.#inner.stat(key, options);
  }

  list(prefix: string, options?: StoreOptions): AsyncIterable<ObjectInfo> {
    return this.#inner.list(prefix, options);
  }

  delete(key: string, options?: StoreOptions): Promise<void> {
    return this.#inner.delete(key, options);
  }

  async #wait(bucket: TokenBucket, bytes: number, signal: AbortSignal | undefined): Promise<void> {
    const started = this.#clock.now();
    try {
      await bucket.take(bytes, signal);
    } finally {
      this.#counters.waitedMs += this.#clock.now() - started;
    }
  }
}

function rateFunction(source: RateSource): (now: number) => number {
  const unlimitedIfZero = (rate: number) => (rate > 0 ? rate : Infinity);
  if (source === undefined) return () => Infinity;
  if (typeof source === 'number') return () => unlimitedIfZero(source);
  if (typeof source === 'function') return (now) => unlimitedIfZero(source(now));
  return (now) => unlimitedIfZero(bytesPerSecondAt(source, now));
}

/** `promise`, or the signal's reason as soon as it aborts (the promise itself is not cancelled). */
function abortable(promise: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return promise;
  throwIfAborted(signal);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
