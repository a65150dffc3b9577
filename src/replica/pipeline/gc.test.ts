import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { BlobIdSet } from '../../catalog/blob-id-set.js';
import { RELEASE_TABLE_BYTES, releaseReplacedTable } from './gc.js';

/** A WeakRef to an object nothing else holds, taken in an earlier turn (a WeakRef keeps its target alive for the turn that made it). */
async function unheldRef(): Promise<WeakRef<object>> {
  const ref = new WeakRef({ payload: new Array(1024).fill(1) });
  await tick();
  return ref;
}

describe('releaseReplacedTable', () => {
  it('runs a full collection when a large dedup table was outgrown, so its memory goes back at once', async () => {
    const set = new BlobIdSet(Math.ceil((RELEASE_TABLE_BYTES / 32) * 0.7));
    const old = set.table().slots;
    expect(old.byteLength).toBeGreaterThanOrEqual(RELEASE_TABLE_BYTES);
    const ref = await unheldRef();
    releaseReplacedTable(old);
    expect(ref.deref()).toBeUndefined();
  });

  it('leaves small tables (and none) to the ordinary collector', () => {
    expect(() => releaseReplacedTable(new BlobIdSet(16).table().slots)).not.toThrow();
    expect(() => releaseReplacedTable(null)).not.toThrow();
  });
});
