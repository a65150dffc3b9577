// Turns a plaintext blob into its sealed, possibly compressed form and back, checking its id.
import { createCipheriv } from 'node:crypto';
import { NONCE_BYTES, SEAL_OVERHEAD, TAG_BYTES, nextNonce, open } from '../crypto/aead.js';
import { blobId } from '../crypto/hash.js';
import { IntegrityError } from '../errors.js';
import { lz4CompressInto, lz4DecompressInto } from './lz4.js';
import { Compression } from './pack.js';

/** LZ4 is kept only when it saves at least 1/32 of the blob. */
const MIN_SAVING_SHIFT = 5;
/** Bytes of a chunk compressed first to decide whether the whole chunk is worth compressing. */
const SAMPLE_BYTES = 32 * 1024;

export interface EncodedBlob {
  sealed: Buffer;
  compression: Compression;
}

export interface BlobPayload {
  /**
   * `plain` itself (not copied) when stored raw; else the LZ4 frame in this thread's scratch buffer,
   * valid until the next `compressBlob` on this thread (seal it, or copy it, before that).
   */
  payload: Buffer;
  compression: Compression;
}

/**
 * Compresses (only where it pays) and seals `plain` under `id`. Incompressible data is detected on a
 * sample first, since LZ4 over random bytes costs as much as over text and gains nothing.
 */
export function encodeBlob(encKey: Buffer, id: Buffer, plain: Buffer): EncodedBlob {
  const { payload, compression } = compressBlob(plain);
  const sealed = Buffer.allocUnsafe(payload.length + SEAL_OVERHEAD);
  sealInto(sealed, encKey, payload, id);
  return { sealed, compression };
}

/** `buf` when it holds at least `n` bytes, else a new buffer of `n` (this thread's scratch buffers grow so). */
function atLeast(buf: Buffer, n: number): Buffer {
  return buf.length >= n ? buf : Buffer.allocUnsafeSlow(n);
}

/** Bytes an LZ4 frame of `n` raw bytes may take at most to be kept (it must save at least 1/32). */
function keptLimit(n: number): number {
  return n - (n >> MIN_SAVING_SHIFT) - 1;
}

/** This thread's LZ4 output buffer, grown to the largest blob seen (chunks are at most 64 MiB). */
let scratch: Buffer = Buffer.alloc(0);

/**
 * The payload stored for `plain`: its LZ4 frame when that saves at least 1/32, else `plain` itself.
 * LZ4 is stopped as soon as its output would not save that much (it writes into a buffer of that size).
 */
export function compressBlob(plain: Buffer): BlobPayload {
  if (plain.length >= 256 && worthCompressing(plain)) {
    const limit = keptLimit(plain.length);
    scratch = atLeast(scratch, limit);
    const n = lz4CompressInto(plain, scratch.subarray(0, limit));
    if (n > 0) return { payload: scratch.subarray(0, n), compression: Compression.Lz4 };
  }
  return { payload: plain, compression: Compression.None };
}

function worthCompressing(plain: Buffer): boolean {
  if (plain.length <= SAMPLE_BYTES * 2) return true;
  const limit = keptLimit(SAMPLE_BYTES);
  scratch = atLeast(scratch, limit);
  return lz4CompressInto(plain.subarray(0, SAMPLE_BYTES), scratch.subarray(0, limit)) > 0;
}

/**
 * Seals `payload` into `out` (exactly `payload.length + SEAL_OVERHEAD` bytes, which may be a view into
 * a shared buffer): nonce(12) | AES-256-GCM(payload, aad) | tag(16), the format of crypto/aead.ts
 * `seal`, without allocating the result.
 */
export function sealInto(out: Uint8Array, encKey: Buffer, payload: Uint8Array, aad: Uint8Array): void {
  if (out.length !== payload.length + SEAL_OVERHEAD) throw new RangeError(`sealInto: output is ${out.length} bytes, expected ${payload.length + SEAL_OVERHEAD}`);
  const nonce = out.subarray(0, NONCE_BYTES);
  nextNonce().copy(nonce);
  const cipher = createCipheriv('aes-256-gcm', encKey, nonce);
  cipher.setAAD(aad);
  let n = NONCE_BYTES;
  const body = cipher.update(payload);
  out.set(body, n);
  n += body.length;
  const last = cipher.final();
  if (last.length > 0) {
    out.set(last, n);
    n += last.length;
  }
  out.set(cipher.getAuthTag(), n);
  if (n + TAG_BYTES !== out.length) throw new Error('sealInto: unexpected ciphertext length');
}

export interface SealedParts {
  nonce: Buffer;
  /** The ciphertext, in a buffer of its own (it can be transferred to another thread without a copy). */
  body: Buffer;
  tag: Buffer;
}

/**
 * Seals `payload` as `sealInto` does, but returns the three parts (nonce | ciphertext | tag) without
 * joining them: the ciphertext stays in the cipher's own output buffer, and whoever assembles the
 * pack copies each part once.
 */
export function sealParts(encKey: Buffer, payload: Uint8Array, aad: Uint8Array): SealedParts {
  const nonce = nextNonce();
  const cipher = createCipheriv('aes-256-gcm', encKey, nonce);
  cipher.setAAD(aad);
  let body = cipher.update(payload);
  const last = cipher.final();
  if (last.length > 0) body = Buffer.concat([body, last]);
  return { nonce, body, tag: cipher.getAuthTag() };
}

/** This thread's buffer for `decodeBlob(…, { transient: true })`. */
let plainScratch: Buffer = Buffer.alloc(0);

/**
 * Opens a sealed blob, decompresses it, and (when `verifyId`) recomputes its id under `idKey`. With
 * `transient`, a compressed blob is decompressed into this thread's scratch buffer: the result is valid
 * only until the next transient decode on this thread (for a caller that only hashes it).
 */
export function decodeBlob(
  keys: { encKey: Buffer; idKey: Buffer },
  entry: { id: Buffer; compression: Compression; rawLength: number },
  sealed: Buffer,
  options: { verifyId?: boolean; what?: string; transient?: boolean } = {},
): Buffer {
  const what = options.what ?? `blob ${entry.id.toString('hex').slice(0, 16)}`;
  const payload = open(keys.encKey, sealed, entry.id, what);
  let plain: Buffer;
  if (entry.compression === Compression.Lz4) {
    try {
      if (options.transient) plainScratch = atLeast(plainScratch, entry.rawLength);
      plain = lz4DecompressInto(payload, entry.rawLength, options.transient ? plainScratch : null);
    } catch (err) {
      throw new IntegrityError(`${what}: does not decompress`, { cause: err });
    }
  } else plain = payload;
  if (plain.length !== entry.rawLength) throw new IntegrityError(`${what}: length ${plain.length}, expected ${entry.rawLength}`);
  if (options.verifyId && !blobId(keys.idKey, plain).equals(entry.id)) throw new IntegrityError(`${what}: content does not match its id`);
  return plain;
}
