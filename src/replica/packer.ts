// Appends sealed blobs to packs and streams each pack to the store as it fills (temp file, fsync, rename).
import { randomBytes } from 'node:crypto';
import { crashPoint } from '../crash.js';
import { openObjectWriter, type ObjectStore, type ObjectWriter } from '../store/object-store.js';
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

/** How the open pack reaches the store: in pieces of this size (a pack is never held whole in memory). */
export const STAGE_BYTES = 256 * 1024;
/** Pieces handed to the store and not yet written, beyond which `add` waits (backpressure). */
const MAX_STAGED = 4;

interface OpenPack {
  id: Buffer;
  /** Opened when the pack starts; its failure is taken up by the pack's writes and by `#finishPack`. */
  writer: Promise<ObjectWriter>;
  entries: PackEntry[];
  /** Bytes of blobs in the pack so far (the next blob's offset). */
  size: number;
  /** The pack's piece writes, each settling (never rejecting: a failure lands in `#error`). */
  writes: Promise<void>[];
}

/**
 * Contract: every blob passed to `add` is in a durable pack once `flush` resolves; a pack is
 * reported (onPackWritten, flush's result) only after the store made it durable. If a write fails,
 * the next `add` or `flush` throws that error.
 *
 * `add` copies `sealed` before it returns (before its promise settles), so the caller may reuse that
 * memory (a shared ring, a read buffer) as soon as `add` has been called. A pack is streamed to the
 * store as it fills (`openObjectWriter`: for the local pool, a temporary file that is fsynced and
 * renamed into place when the pack is sealed), through a few reused pieces of `STAGE_BYTES`, so the
 * packer's memory does not depend on the pack size. The pack's tail (sealed header and trailer) is
 * appended when it is sealed; nothing is visible under the pack's key before then.
 */
export class Packer {
  readonly #store: ObjectStore;
  readonly #options: PackerOptions;
  #open: OpenPack | null = null;
  /** The piece being filled, and how much of it is. */
  #stage: Buffer | null = null;
  #stageUsed = 0;
  /** Pieces whose write completed, reused (so memory stays flat). */
  #free: Buffer[] = [];
  /** Piece writes in flight, across packs. */
  #staged = new Set<Promise<void>>();
  /** Packs sealed and being committed (fsync, rename). */
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
    return this.#open?.size ?? 0;
  }

  /** `sealed` is the sealed blob, whole or as consecutive parts (e.g. nonce, ciphertext, tag). */
  async add(type: BlobType, id: Buffer, sealed: Uint8Array | readonly Uint8Array[], rawLength: number, compression: Compression): Promise<void> {
    if (this.#error) throw this.#error;
    const parts = sealed instanceof Uint8Array ? [sealed] : sealed;
    const pack = (this.#open ??= this.#startPack());
    const offset = pack.size;
    let length = 0;
    for (const p of parts) {
      this.#copy(pack, p);
      length += p.length;
    }
    pack.size += length;
    pack.entries.push({ type, id, offset, length, rawLength, compression });
    while (this.#staged.size > MAX_STAGED) await Promise.race(this.#staged);
    if (this.#error) throw this.#error;
    if (pack.size >= this.#options.targetBytes && this.#open === pack) await this.#finishPack();
  }

  #startPack(): OpenPack {
    const id = randomBytes(32);
    const signal = this.#options.signal;
    const writer = openObjectWriter(this.#store, packKey(id.toString('hex')), signal ? { signal } : {});
    writer.catch(() => {}); // reported through the pack's writes and its commit
    return { id, writer, entries: [], size: 0, writes: [] };
  }

  /** Copies `data` into pieces, sending each full piece to the pack's writer. */
  #copy(pack: OpenPack, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      if (!this.#stage) {
        this.#stage = this.#free.pop() ?? Buffer.allocUnsafeSlow(STAGE_BYTES);
        this.#stageUsed = 0;
      }
      const n = Math.min(data.length - done, STAGE_BYTES - this.#stageUsed);
      this.#stage.set(data.subarray(done, done + n), this.#stageUsed);
      this.#stageUsed += n;
      done += n;
      if (this.#stageUsed === STAGE_BYTES) this.#send(pack);
    }
  }

  /** Hands the piece being filled to the pack's writer. */
  #send(pack: OpenPack): void {
    const buf = this.#stage;
    const used = this.#stageUsed;
    this.#stage = null;
    this.#stageUsed = 0;
    if (!buf || used === 0) {
      if (buf) this.#free.push(buf);
      return;
    }
    const write: Promise<void> = pack.writer
      .then((w) => w.write(buf.subarray(0, used)))
      .then(() => {
        if (this.#free.length <= MAX_STAGED) this.#free.push(buf);
      })
      .catch((err: unknown) => {
        this.#error ??= err;
      })
      .finally(() => this.#staged.delete(write));
    this.#staged.add(write);
    pack.writes.push(write);
  }

  async #finishPack(): Promise<void> {
    const pack = this.#open;
    if (!pack) return;
    this.#open = null;
    const tail = packTail(this.#options.encKey, pack.id, pack.entries);
    this.#copy(pack, tail);
    this.#send(pack);
    const indexed: IndexedPack = { id: pack.id, size: pack.size + tail.length, entries: pack.entries };
    const write = (async () => {
      await Promise.all(pack.writes);
      const writer = await pack.writer;
      if (this.#error) {
        await writer.abort();
        throw this.#error;
      }
      await writer.commit();
    })()
      .then(() => {
        crashPoint('pack-written');
        this.bytesWritten += indexed.size;
        if (this.#options.retain ?? true) this.#written.push(indexed);
        this.#options.onPackWritten?.(indexed);
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

  /** Waits for writes in flight and drops the open pack, removing what of it was written (used when a job is abandoned). */
  async abandon(): Promise<void> {
    const pack = this.#open;
    this.#open = null;
    if (this.#stage) this.#free.push(this.#stage);
    this.#stage = null;
    this.#stageUsed = 0;
    if (pack) {
      await Promise.all(pack.writes);
      await pack.writer.then(
        (w) => w.abort(),
        () => {},
      );
    }
    await Promise.allSettled(this.#inFlight);
  }
}
