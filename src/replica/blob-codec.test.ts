import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bytes, text } from '../../test/helpers/fs-tree.js';
import { open } from '../crypto/aead.js';
import { blobId } from '../crypto/hash.js';
import { compressBlob, decodeBlob, encodeBlob, sealInto } from './blob-codec.js';
import { Compression } from './pack.js';

const keys = { encKey: randomBytes(32), idKey: randomBytes(32) };

describe('blob codec', () => {
  it('compresses text, stores incompressible data raw (decided on a sample), and decodes both', () => {
    for (const [plain, want] of [
      [text(1, 300_000), Compression.Lz4],
      [bytes(2, 300_000), Compression.None],
      [bytes(3, 100), Compression.None],
    ] as const) {
      const id = blobId(keys.idKey, plain);
      const enc = encodeBlob(keys.encKey, id, plain);
      expect(enc.compression).toBe(want);
      expect(decodeBlob(keys, { id, compression: enc.compression, rawLength: plain.length }, enc.sealed, { verifyId: true }).equals(plain)).toBe(true);
    }
  });

  it('sealInto writes the aead.ts format into a view of a larger (shared) buffer', () => {
    const plain = text(4, 50_000);
    const id = blobId(keys.idKey, plain);
    const { payload, compression } = compressBlob(plain);
    const shared = Buffer.from(new SharedArrayBuffer(payload.length + 100));
    const view = shared.subarray(37, 37 + payload.length + 28);
    sealInto(view, keys.encKey, payload, id);
    expect(open(keys.encKey, Buffer.from(view), id).equals(payload)).toBe(true);
    expect(decodeBlob(keys, { id, compression, rawLength: plain.length }, Buffer.from(view), { verifyId: true }).equals(plain)).toBe(true);
    expect(() => sealInto(shared.subarray(0, 10), keys.encKey, payload, id)).toThrow(RangeError);
  });
});
