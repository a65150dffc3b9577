import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BlobIdSet } from './blob-id-set.js';

describe('BlobIdSet', () => {
  it('holds exactly what was added, across growth', () => {
    const set = new BlobIdSet(4);
    const ids = Array.from({ length: 5000 }, () => randomBytes(32));
    for (const id of ids) expect(set.add(id)).toBe(true);
    for (const id of ids) expect(set.has(id)).toBe(true);
    expect(set.add(ids[7]!)).toBe(false);
    expect(set.size).toBe(5000);
    for (let i = 0; i < 5000; i++) expect(set.has(randomBytes(32))).toBe(false);
  });
  it('handles unaligned views, and the all-zero id', () => {
    const set = new BlobIdSet();
    const big = randomBytes(40);
    const id = big.subarray(3, 35);
    set.add(id);
    expect(set.has(Buffer.from(id))).toBe(true);
    expect(set.has(Buffer.alloc(32))).toBe(false);
    set.add(Buffer.alloc(32));
    expect(set.has(Buffer.alloc(32))).toBe(true);
  });
});
