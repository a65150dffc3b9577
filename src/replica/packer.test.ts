import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirStore } from '../store/dir-store.js';
import { FaultStore } from '../store/fault-store.js';
import { MemoryStore } from '../store/memory-store.js';
import { listAll, type ObjectStore, type ObjectWriter, type StoreOptions } from '../store/object-store.js';
import { readPackHeader } from './pack.js';
import { Packer, STAGE_BYTES } from './packer.js';
import { packKey } from './pool.js';

const encKey = randomBytes(32);

/** A DirStore that records how large each streamed write is and how many are in flight at once. */
class RecordingDirStore extends DirStore {
  writes: number[] = [];
  puts = 0;
  inFlight = 0;
  maxInFlight = 0;
  override async put(key: string, data: Uint8Array, options?: StoreOptions): Promise<void> {
    this.puts++;
    return super.put(key, data, options);
  }
  override async openWriter(key: string, options?: StoreOptions): Promise<ObjectWriter> {
    const inner = await super.openWriter(key, options);
    return {
      write: async (data) => {
        this.writes.push(data.length);
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        try {
          await inner.write(data);
        } finally {
          this.inFlight--;
        }
      },
      commit: () => inner.commit(),
      abort: () => inner.abort(),
    };
  }
}

async function checkPacks(store: ObjectStore, blobs: Map<string, Buffer>, packs: { id: Buffer; size: number; entries: { id: Buffer; offset: number; length: number }[] }[]): Promise<void> {
  let seen = 0;
  for (const p of packs) {
    const data = await store.get(packKey(p.id.toString('hex')));
    expect(data.length).toBe(p.size);
    const entries = readPackHeader(encKey, p.id, data, 'pack');
    expect(entries.map((e) => [e.id.toString('hex'), e.offset, e.length])).toEqual(p.entries.map((e) => [e.id.toString('hex'), e.offset, e.length]));
    for (const e of entries) {
      expect(data.subarray(e.offset, e.offset + e.length).equals(blobs.get(e.id.toString('hex'))!)).toBe(true);
      seen++;
    }
  }
  expect(seen).toBe(blobs.size);
}

describe('Packer', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'strata-packer-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('streams packs to a directory store in pieces no larger than a stage, and they read back whole', async () => {
    const store = new RecordingDirStore(dir);
    const packer = new Packer(store, { encKey, targetBytes: 3 * STAGE_BYTES });
    const blobs = new Map<string, Buffer>();
    // Blobs of every size around a stage, including ones larger than several stages; the caller's
    // buffer is overwritten right after `add` is called, as the backup's shared ring does.
    const scratch = Buffer.alloc(3 * STAGE_BYTES + 17);
    for (const len of [28, 100, STAGE_BYTES - 1, STAGE_BYTES, STAGE_BYTES + 1, 3 * STAGE_BYTES + 17, 5000, 29]) {
      const data = randomBytes(len);
      const id = randomBytes(32);
      blobs.set(id.toString('hex'), data);
      data.copy(scratch);
      const added = packer.add(0, id, [scratch.subarray(0, 1), scratch.subarray(1, len)], len, 0);
      scratch.fill(0xee);
      await added;
    }
    const packs = await packer.flush();
    expect(packs.length).toBeGreaterThan(1);
    expect(store.puts).toBe(0);
    expect(Math.max(...store.writes)).toBeLessThanOrEqual(STAGE_BYTES);
    expect(store.writes.reduce((a, b) => a + b, 0)).toBe(packs.reduce((a, p) => a + p.size, 0));
    await checkPacks(store, blobs, packs);
    expect(packer.bytesWritten).toBe(packs.reduce((a, p) => a + p.size, 0));
    // No temporary file is left behind.
    const all = await readdir(dir, { recursive: true });
    expect(all.filter((f) => path.basename(String(f)).startsWith('.tmp-'))).toEqual([]);
  });

  it('keeps memory bounded: no more than a few pieces are handed to the store at once', async () => {
    const store = new RecordingDirStore(dir);
    const packer = new Packer(store, { encKey, targetBytes: 64 * STAGE_BYTES });
    for (let i = 0; i < 40; i++) await packer.add(0, randomBytes(32), randomBytes(STAGE_BYTES / 2 + 3), 1, 0);
    await packer.flush();
    expect(store.maxInFlight).toBeLessThanOrEqual(5);
  });

  it('nothing is visible under the pack key before the pack is sealed; abandon removes the partial pack', async () => {
    const store = new DirStore(dir);
    const packer = new Packer(store, { encKey, targetBytes: 1 << 30 });
    for (let i = 0; i < 6; i++) await packer.add(0, randomBytes(32), randomBytes(STAGE_BYTES), 1, 0);
    expect(packer.pendingBytes).toBe(6 * STAGE_BYTES);
    expect(await listAll(store, 'packs/')).toEqual([]);
    await packer.abandon();
    const all = await readdir(dir, { recursive: true, withFileTypes: true });
    expect(all.filter((f) => f.isFile())).toEqual([]);
  });

  it('a store that does not stream gets each pack whole through put (same packs)', async () => {
    const store = new MemoryStore();
    const packer = new Packer(store, { encKey, targetBytes: 2 * STAGE_BYTES });
    const blobs = new Map<string, Buffer>();
    for (let i = 0; i < 9; i++) {
      const data = randomBytes(STAGE_BYTES / 2 + i);
      const id = randomBytes(32);
      blobs.set(id.toString('hex'), data);
      await packer.add(0, id, data, data.length, 0);
    }
    const packs = await packer.flush();
    expect((await listAll(store, 'packs/')).length).toBe(packs.length);
    await checkPacks(store, blobs, packs);
  });

  it('a failed pack write surfaces from the next add or flush, and no pack is reported', async () => {
    const store = new FaultStore(new MemoryStore());
    store.on('put', /^packs\//).errorInstead(new Error('disk on fire')).repeat(1000);
    const reported: unknown[] = [];
    const packer = new Packer(store, { encKey, targetBytes: STAGE_BYTES, retain: false, onPackWritten: (p) => reported.push(p) });
    const run = async () => {
      for (let i = 0; i < 8; i++) await packer.add(0, randomBytes(32), randomBytes(STAGE_BYTES / 2), 1, 0);
      await packer.flush();
    };
    await expect(run()).rejects.toThrow('disk on fire');
    expect(reported).toEqual([]);
  });
});
