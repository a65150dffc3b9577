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
  /** Pack writes allowed in flight at once; `add` waits (backpressure) beyond it. Default 2. */
  maxInFlight?: number;
  signal?: AbortSignal;
  /** Called once per pack after it is durable, in completion order. */
  onPackWritten?: (pack: IndexedPack) => void;
  /** Keep every pack written, for `flush` to return (default true); a long job that takes them from `onPackWritten` says false. */
  retain?: boolean;
}

/** Room for the sealed header and trailer of a pack of a few thousand blobs, so they rarely force a copy. */
const TAIL_SLACK = 256 * 1024;

/**
 * Contract: every blob passed to `add` is in a durable pack once `flush` resolves; a pack is
 * reported (onPackWritten, flush's result) only after the store's put resolved. If a write fails,
 * the next `add` or `flush` throws that error.
 *
 * `add` copies `sealed` into the open pack before it returns (before its promise settles), so the
 * caller may reuse that memory (a shared ring, a read buffer) as soon as `add` has been called. Each
 * pack is built in one buffer, handed to the store whole (no per-pack concatenation), and reused for a
 * later pack once the store's put has resolved: a store must not keep the buffer it was given.
 */
export class Packer {
  readonly #store: ObjectStore;
  readonly #options: PackerOptions;
  #buf: Buffer | null = null;
  /** Buffers of packs whose write completed, reused for the next packs (so memory stays flat). */
  #spare: Buffer[] = [];
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

  /** Bytes in the open pack (not yet written). */
  get pendingBytes(): number {
    return this.#size;
  }

  /** `sealed` is the sealed blob, whole or as consecutive parts (e.g. nonce, ciphertext, tag). */
  async add(type: BlobType, id: Buffer, sealed: Uint8Array | readonly Uint8Array[], rawLength: number, compression: Compression): Promise<void> {
    if (this.#error) throw this.#error;
    const parts = sealed instanceof Uint8Array ? [sealed] : sealed;
    let length = 0;
    for (const p of parts) length += p.length;
    // A blob that would overflow the open pack's buffer closes that pack first (it is then a little
    // under target), so a pack buffer is never copied to grow it.
    let finished: Promise<void> | null = null;
    if (this.#buf && this.#entries.length > 0 && this.#size + length + TAIL_SLACK > this.#buf.length) finished = this.#finishPack();
    this.#reserve(length + TAIL_SLACK);
    const offset = this.#size;
    for (const p of parts) {
      this.#buf!.set(p, this.#size);
      this.#size += p.length;
    }
    this.#entries.push({ type, id, offset, length, rawLength, compression });
    if (finished) await finished;
    if (this.#size >= this.#options.targetBytes) await this.#finishPack();
  }

  /** Makes sure the open pack's buffer has `n` bytes free after what it holds. */
  #reserve(n: number): void {
    const need = this.#size + n;
    let buf = this.#buf;
    if (!buf || buf.length < need) {
      const target = this.#options.targetBytes;
      const size = Math.max(need, target + (target >> 1) + TAIL_SLACK);
      let grown: Buffer | undefined;
      while (!grown && this.#spare.length > 0) {
        const spare = this.#spare.pop()!;
        if (spare.length >= size) grown = spare;
      }
      grown ??= Buffer.allocUnsafeSlow(size);
      if (buf) buf.copy(grown, 0, 0, this.#size);
      this.#buf = grown;
    }
  }

  async #finishPack(): Promise<void> {
    if (this.#entries.length === 0) return;
    const packId = randomBytes(32);
    const entries = this.#entries;
    const tail = packTail(this.#options.encKey, packId, entries);
    this.#reserve(tail.length);
    const buf = this.#buf!;
    buf.set(tail, this.#size);
    const data = buf.subarray(0, this.#size + tail.length);
    this.#buf = null;
    this.#entries = [];
    this.#size = 0;
    const pack: IndexedPack = { id: packId, size: data.length, entries };
    const write = this.#store
      .put(packKey(packId.toString('hex')), data, this.#options.signal ? { signal: this.#options.signal } : {})
      .then(() => {
        crashPoint('pack-written');
        this.bytesWritten += data.length;
        if (this.#options.retain ?? true) this.#written.push(pack);
        // One spare is enough to start the next pack without allocating (each is a pack's worth of memory).
        if (this.#spare.length < 1) this.#spare.push(buf);
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

  /** Writes the open pack and waits for every write; returns all packs written so far (none without `retain`). */
  async flush(): Promise<IndexedPack[]> {
    await this.#finishPack();
    await Promise.all(this.#inFlight);
    if (this.#error) throw this.#error;
    return this.#written;
  }

  /** Waits for writes in flight and drops the open pack (used when a job is abandoned). */
  async abandon(): Promise<void> {
    this.#buf = null;
    this.#entries = [];
    this.#size = 0;
    await Promise.allSettled(this.#inFlight);
  }
}
