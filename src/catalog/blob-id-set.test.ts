import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BlobIdSet, sharedHas } from './blob-id-set.js';

describe('BlobIdSet', () => {
  it('holds exactly what was added, across growth', () => {
    const set = new BlobIdSet(4);
    const ids = Array.from({ length: 5000 }, () => randomBytes(32));
    for (const id of ids) expect(set.add(id)).toBe(true);
    for (const id of ids) expect(set.has(id)).toBe(true);
    for (const id of ids.slice(0, 50)) expect(set.hasHex(id.toString('hex'))).toBe(true);
    expect(set.hasHex(ids[3]!.toString('hex').toUpperCase())).toBe(true);
    expect(set.hasHex(randomBytes(32).toString('hex'))).toBe(false);
    expect(set.hasHex('xyz')).toBe(false);
    expect(set.hasHex('g'.repeat(64))).toBe(false);
    expect(set.add(ids[7]!)).toBe(false);
    expect(set.size).toBe(5000);
    for (let i = 0; i < 5000; i++) expect(set.has(randomBytes(32))).toBe(false);
  });
  it('comes back from its snapshot exactly, and refuses bytes that are not one', () => {
    const set = new BlobIdSet(4);
    const ids = Array.from({ length: 3000 }, () => randomBytes(32));
    for (const id of ids) set.add(id);
    set.add(Buffer.alloc(32));
    const snap = set.snapshot();
    const back = BlobIdSet.fromSnapshot(snap)!;
    expect(back.size).toBe(set.size);
    for (const id of ids) expect(back.has(id)).toBe(true);
    expect(back.has(Buffer.alloc(32))).toBe(true);
    expect(back.has(randomBytes(32))).toBe(false);
    const more = randomBytes(32);
    expect(back.add(more)).toBe(true); // still a working set, growing as needed
    for (let i = 0; i < 3000; i++) back.add(randomBytes(32));
    expect(back.has(more) && back.has(ids[0]!)).toBe(true);

    expect(BlobIdSet.fromSnapshot(snap.subarray(0, snap.length - 32))).toBeNull(); // truncated
    const otherCount = Buffer.from(snap);
    otherCount.writeUInt32LE(otherCount.readUInt32LE(16) + 1, 16);
    expect(BlobIdSet.fromSnapshot(otherCount)).toBeNull(); // the count does not match the table
    const lostId = Buffer.from(snap);
    const firstUsed = lostId.subarray(24).findIndex((b) => b !== 0);
    lostId.fill(0, 24 + firstUsed - (firstUsed % 32), 24 + firstUsed - (firstUsed % 32) + 32);
    expect(BlobIdSet.fromSnapshot(lostId)).toBeNull();
    expect(BlobIdSet.fromSnapshot(Buffer.from('SIDSET02' + snap.toString('latin1', 8), 'latin1'))).toBeNull(); // another format
    expect(BlobIdSet.fromSnapshot(Buffer.alloc(10))).toBeNull();
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
  it('shares its table read-only: what was added is seen through it, and a grown set hands out a new table', () => {
    const set = new BlobIdSet(4);
    const before = set.table();
    const gen = set.generation;
    const ids = Array.from({ length: 100 }, () => randomBytes(32));
    set.add(ids[0]!);
    expect(sharedHas(before, ids[0]!)).toBe(true);
    expect(before.slots.buffer).toBeInstanceOf(SharedArrayBuffer);
    for (const id of ids) set.add(id);
    expect(set.generation).toBeGreaterThan(gen);
    const after = set.table();
    for (const id of ids) expect(sharedHas(after, id)).toBe(true);
    expect(sharedHas(after, randomBytes(32))).toBe(false);
    // The all-zero id is never reported by a shared table (its owner alone knows it).
    set.add(Buffer.alloc(32));
    expect(sharedHas(set.table(), Buffer.alloc(32))).toBe(false);
  });
  it('grows by half, never to more than 1.5/0.7 slots per id, and a set sized for its ids does not grow', () => {
    const set = new BlobIdSet(16);
    for (let i = 0; i < 20000; i++) {
      set.add(randomBytes(32));
      const slots = set.table().capacity;
      expect(slots * 0.7).toBeGreaterThanOrEqual(set.size);
      if (set.size > 1000) expect(slots).toBeLessThanOrEqual(Math.ceil((set.size * 1.5) / 0.7) + 2);
    }
    expect(set.table().slots.length).toBe(set.table().capacity * 8);
    const sized = new BlobIdSet(5000);
    const gen = sized.generation;
    const ids = Array.from({ length: 5000 }, () => randomBytes(32));
    for (const id of ids) sized.add(id);
    expect(sized.generation).toBe(gen);
    for (const id of ids) expect(sized.has(id)).toBe(true);
  });
  it('finds ids whose probe run wraps past the last slot', () => {
    const set = new BlobIdSet(100);
    const cap = set.table().capacity;
    // Ids whose home slot is the last one (the first word, little-endian, is cap - 1).
    const ids = Array.from({ length: 5 }, () => {
      const id = randomBytes(32);
      id.writeUInt32LE(cap - 1, 0);
      return id;
    });
    for (const id of ids) expect(set.add(id)).toBe(true);
    for (const id of ids) expect(set.has(id)).toBe(true);
    for (const id of ids) expect(sharedHas(set.table(), id)).toBe(true);
    const other = randomBytes(32);
    other.writeUInt32LE(cap - 1, 0);
    expect(set.has(other)).toBe(false);
  });
});
