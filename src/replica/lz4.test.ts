import { compressSync, uncompressSync } from 'lz4-napi';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytes, text } from '../../test/helpers/fs-tree.js';
import { LZ4_PREFIX_BYTES, lz4CompressInto, lz4Decompress, lz4FramedBound } from './lz4.js';

function compress(plain: Buffer): Buffer {
  const out = Buffer.allocUnsafe(lz4FramedBound(plain.length));
  return out.subarray(0, lz4CompressInto(plain, out));
}

describe('lz4 framing', () => {
  it('round-trips text, random and empty-ish data', () => {
    for (const plain of [text(1, 300_000), bytes(2, 70_000), Buffer.from('a'), text(3, 1 << 20)]) {
      const framed = compress(plain);
      expect(framed.length).toBeGreaterThan(LZ4_PREFIX_BYTES);
      expect(lz4Decompress(framed, plain.length).equals(plain)).toBe(true);
    }
  });

  it('is the framing lz4-napi writes: pools written before the switch decode, and lz4-napi reads ours', () => {
    for (const plain of [text(4, 200_000), bytes(5, 10_000)]) {
      expect(lz4Decompress(compressSync(plain), plain.length).equals(plain)).toBe(true);
      expect(uncompressSync(compress(plain)).equals(plain)).toBe(true);
    }
  });

  it('gives up (0) when the output does not fit, instead of writing past it', () => {
    const plain = bytes(6, 100_000);
    const out = Buffer.alloc(50_000 + 16);
    expect(lz4CompressInto(plain, out.subarray(0, 50_000))).toBe(0);
    expect(out.subarray(50_000).every((b) => b === 0)).toBe(true);
    expect(lz4CompressInto(plain, Buffer.alloc(3))).toBe(0);
  });

  it('refuses frames that name another length, are truncated or malformed', () => {
    const plain = text(7, 100_000);
    const framed = compress(plain);
    expect(() => lz4Decompress(framed, plain.length + 1)).toThrow(/names 100000 bytes/);
    expect(() => lz4Decompress(framed.subarray(0, 3), plain.length)).toThrow(/too short/);
    expect(() => lz4Decompress(framed.subarray(0, framed.length - 10), plain.length)).toThrow();
  });

  it('never crashes or over-reads on hostile frames (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), fc.integer({ min: 0, max: 1 << 16 }), (body, rawLength) => {
        const framed = Buffer.alloc(LZ4_PREFIX_BYTES + body.length);
        framed.writeUInt32LE(rawLength, 0);
        framed.set(body, LZ4_PREFIX_BYTES);
        try {
          const out = lz4Decompress(framed, rawLength);
          expect(out.length).toBe(rawLength);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
        }
      }),
      { numRuns: 500 },
    );
  });
});
