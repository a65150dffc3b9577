// Turns a plaintext blob into its sealed, possibly compressed form and back, checking its id.
import { compressSync, uncompressSync } from 'lz4-napi';
import { open, seal } from '../crypto/aead.js';
import { blobId } from '../crypto/hash.js';
import { IntegrityError } from '../errors.js';
import { Compression } from './pack.js';

/** LZ4 is kept only when it saves at least 1/32 of the blob. */
const MIN_SAVING_SHIFT = 5;
/** Bytes of a chunk compressed first to decide whether the whole chunk is worth compressing. */
const SAMPLE_BYTES = 32 * 1024;

export interface EncodedBlob {
  sealed: Buffer;
  compression: Compression;
}

/**
 * Compresses (only where it pays) and seals `plain` under `id`. Incompressible data is detected on a
 * sample first, since LZ4 over random bytes is several times slower than over text.
 */
export function encodeBlob(encKey: Buffer, id: Buffer, plain: Buffer): EncodedBlob {
  let payload = plain;
  let compression = Compression.None;
  if (plain.length >= 256 && worthCompressing(plain)) {
    const packed = compressSync(plain);
    if (packed.length < plain.length - (plain.length >> MIN_SAVING_SHIFT)) {
      payload = packed;
      compression = Compression.Lz4;
    }
  }
  return { sealed: seal(encKey, payload, id), compression };
}

function worthCompressing(plain: Buffer): boolean {
  if (plain.length <= SAMPLE_BYTES * 2) return true;
  const sample = plain.subarray(0, SAMPLE_BYTES);
  return compressSync(sample).length < SAMPLE_BYTES - (SAMPLE_BYTES >> MIN_SAVING_SHIFT);
}

/** Opens a sealed blob, decompresses it, and (when `verifyId`) recomputes its id under `idKey`. */
export function decodeBlob(
  keys: { encKey: Buffer; idKey: Buffer },
  entry: { id: Buffer; compression: Compression; rawLength: number },
  sealed: Buffer,
  options: { verifyId?: boolean; what?: string } = {},
): Buffer {
  const what = options.what ?? `blob ${entry.id.toString('hex').slice(0, 16)}`;
  const payload = open(keys.encKey, sealed, entry.id, what);
  let plain: Buffer;
  if (entry.compression === Compression.Lz4) {
    try {
      plain = uncompressSync(payload);
    } catch (err) {
      throw new IntegrityError(`${what}: does not decompress`, { cause: err });
    }
  } else plain = payload;
  if (plain.length !== entry.rawLength) throw new IntegrityError(`${what}: length ${plain.length}, expected ${entry.rawLength}`);
  if (options.verifyId && !blobId(keys.idKey, plain).equals(entry.id)) throw new IntegrityError(`${what}: content does not match its id`);
  return plain;
}
