import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { gearTable } from '../crypto/hash.js';
import { Chunker, chunkAll, type ChunkerParams } from './chunker.js';

/** The chunker as first written (uint32 arithmetic, one byte per step): the unrolled int32 one must cut exactly the same. */
function referenceCut(params: ChunkerParams, gear: Uint32Array, buf: Uint8Array, start: number, end: number, eof: boolean): number {
  const top = (bits: number) => (bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0);
  const bits = Math.round(Math.log2(params.avg));
  const maskS = top(bits + 2);
  const maskL = top(bits - 2);
  const scan = (limit: number) => {
    const normal = Math.min(params.avg, limit);
    let h = 0;
    let i = params.min;
    for (let j = Math.max(0, i - 32); j < i; j++) h = ((h << 1) + gear[buf[start + j]!]!) >>> 0;
    for (; i < normal; i++) {
      h = ((h << 1) + gear[buf[start + i]!]!) >>> 0;
      if ((h & maskS) === 0) return i + 1;
    }
    for (; i < limit; i++) {
      h = ((h << 1) + gear[buf[start + i]!]!) >>> 0;
      if ((h & maskL) === 0) return i + 1;
    }
    return limit;
  };
  const available = end - start;
  if (available <= params.min) return eof ? available : 0;
  if (available < params.max && !eof) {
    const n = scan(available);
    return n < available ? n : 0;
  }
  return scan(Math.min(available, params.max));
}

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

  it('cuts exactly where the straightforward loop does, for any window and parameters', () => {
    for (const [seed, params] of [
      [5, SMALL],
      [6, { min: 64, avg: 256, max: 1024 }],
      [7, { min: 4096, avg: 16384, max: 20000 }],
      [8, { min: 1000, avg: 2048, max: 3001 }],
    ] as const) {
      const gear = gearTable(Buffer.alloc(32, seed));
      const c = new Chunker(params, gear);
      const data = seededBytes(seed, 300_000);
      // Low-entropy stretches too, where cut points come late or not at all.
      data.fill(0, 100_000, 140_000);
      for (let start = 0; start < data.length - 1; start += 9_973) {
        for (const end of [start + params.min, start + params.min + 1, start + params.avg + 3, start + params.max - 1, start + params.max, data.length]) {
          if (end > data.length || end <= start) continue;
          for (const eof of [false, true]) expect(c.cut(data, start, end, eof)).toBe(referenceCut(params, gear, data, start, end, eof));
        }
      }
    }
  });

  it('different keys cut differently', () => {
    const data = seededBytes(4, 256 * 1024);
    const other = new Chunker(SMALL, gearTable(Buffer.alloc(32, 4)));
    expect(chunkAll(other, data)).not.toEqual(chunkAll(chunker, data));
  });
});
