// Appends sealed blobs to packs and writes each pack whole (temp file, fsync, rename, via the store).
import { randomBytes } from 'node:crypto';
import { crashPoint } from '../crash.js';
import type { ObjectStore } from '../store/object-store.js';
import type { IndexedPack } from './index-segment.js';
import { packKey } from './pool.js';
import { packTail, type BlobType, type Compression, type PackEntry } from './pack.js';

export interface PackerOptions {
  encKey: Buffer;
  targetBytes: number;
  /** Pack writes allowed in flight at once; `add` waits (backpressure) beyond it. */
  maxInFlight?: number;
  signal?: AbortSignal;
  /** Called once per pack after it is durable, in completion order. */
  onPackWritten?: (pack: IndexedPack) => void;
}

/**
 * Contract: every blob passed to `add` is in a durable pack once `flush` resolves; a pack is
 * reported (onPackWritten, flush's result) only after the store's put resolved. If a write fails,
 * the next `add` or `flush` throws that error.
 */
export class Packer {
  readonly #store: ObjectStore;
  readonly #options: PackerOptions;
  #parts: Buffer[] = [];
  #entries: PackEntry[] = [];
  #size = 0;
  #inFlight = new Set<Promise<void>>();
  #written: IndexedPack[] = [];
  #error: unknown = null;
  bytesWritten = 0;

  constructor(store: ObjectStore, options: PackerOptions) {
    this.#store = store;
    this.#options = options;
  }

  async add(type: BlobType, id: Buffer, sealed: Buffer, rawLength: number, compression: Compression): Promise<void> {
    if (this.#error) throw this.#error;
    this.#entries.push({ type, id, offset: this.#size, length: sealed.length, rawLength, compression });
    this.#parts.push(sealed);
    this.#size += sealed.length;
    if (this.#size >= this.#options.targetBytes) await this.#finishPack();
  }

  async #finishPack(): Promise<void> {
    if (this.#entries.length === 0) return;
    const packId = randomBytes(32);
    const entries = this.#entries;
    const tail = packTail(this.#options.encKey, packId, entries);
    const data = Buffer.concat([...this.#parts, tail]);
    this.#parts = [];
    this.#entries = [];
    this.#size = 0;
    const pack: IndexedPack = { id: packId, size: data.length, entries };
    const write = this.#store
      .put(packKey(packId.toString('hex')), data, this.#options.signal ? { signal: this.#options.signal } : {})
      .then(() => {
        crashPoint('pack-written');
        this.bytesWritten += data.length;
        this.#written.push(pack);
        this.#options.onPackWritten?.(pack);
      })
      .catch((err: unknown) => {
        this.#error ??= err;
      })
      .finally(() => this.#inFlight.delete(write));
    this.#inFlight.add(write);
    while (this.#inFlight.size >= (this.#options.maxInFlight ?? 2)) await Promise.race(this.#inFlight);
    if (this.#error) throw this.#error;
  }

  /** Writes the open pack and waits for every write; returns all packs written so far. */
  async flush(): Promise<IndexedPack[]> {
    await this.#finishPack();
    await Promise.all(this.#inFlight);
    if (this.#error) throw this.#error;
    return this.#written;
  }

  /** Waits for writes in flight and drops the open pack (used when a job is abandoned). */
  async abandon(): Promise<void> {
    this.#parts = [];
    this.#entries = [];
    this.#size = 0;
    await Promise.allSettled(this.#inFlight);
  }
}
