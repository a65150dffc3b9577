import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { gearTable } from '../crypto/hash.js';
import { Chunker, chunkAll } from './chunker.js';

/** Deterministic pseudo-random bytes from a seed. */
export function seededBytes(seed: number, n: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed);
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

const SMALL = { min: 2 * 1024, avg: 8 * 1024, max: 64 * 1024 };

describe('FastCDC chunker', () => {
  const chunker = new Chunker(SMALL, gearTable(Buffer.alloc(32, 3)));

  it('covers the input exactly, within min and max', () => {
    const data = seededBytes(1, 1024 * 1024);
    const lengths = chunkAll(chunker, data);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(data.length);
    for (const n of lengths.slice(0, -1)) {
      expect(n).toBeGreaterThan(SMALL.min);
      expect(n).toBeLessThanOrEqual(SMALL.max);
    }
    const mean = data.length / lengths.length;
    expect(mean).toBeGreaterThan(SMALL.avg * 0.6);
    expect(mean).toBeLessThan(SMALL.avg * 2);
  });

  it('is deterministic and resynchronises after an insert in the middle', () => {
    const data = seededBytes(2, 512 * 1024);
    const edited = Buffer.concat([data.subarray(0, 200_000), Buffer.from('inserted bytes!'), data.subarray(200_000)]);
    const cuts = (b: Buffer) => {
      const out: string[] = [];
      let pos = 0;
      for (const n of chunkAll(chunker, b)) {
        out.push(b.subarray(pos, pos + n).toString('base64'));
        pos += n;
      }
      return out;
    };
    const a = cuts(data);
    const b = cuts(edited);
    expect(cuts(data)).toEqual(a);
    const shared = b.filter((c) => a.includes(c)).length;
    // Only the chunk(s) around the insert differ.
    expect(a.length - shared).toBeLessThanOrEqual(2);
  });

  it('a small file is one chunk; an empty one none', () => {
    expect(chunkAll(chunker, Buffer.alloc(100))).toEqual([100]);
    expect(chunkAll(chunker, Buffer.alloc(0))).toEqual([]);
  });

  it('asks for more data only when it has less than max and no cut point', () => {
    const data = seededBytes(3, SMALL.max * 2);
    const n = chunker.cut(data, 0, SMALL.min, false);
    expect(n).toBe(0);
    expect(chunker.cut(data, 0, data.length, false)).toBeGreaterThan(0);
  });

  it('different keys cut differently', () => {
    const data = seededBytes(4, 256 * 1024);
    const other = new Chunker(SMALL, gearTable(Buffer.alloc(32, 4)));
    expect(chunkAll(other, data)).not.toEqual(chunkAll(chunker, data));
  });
});
