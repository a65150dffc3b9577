import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirStore, TEMP_PREFIX } from './dir-store.js';
import { MemoryStore } from './memory-store.js';
import { exists, isStreamingStore, listAll, openObjectWriter, type ObjectStore } from './object-store.js';

async function files(dir: string): Promise<string[]> {
  const all = await readdir(dir, { recursive: true, withFileTypes: true });
  return all.filter((e) => e.isFile()).map((e) => e.name);
}

describe('object writers', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'strata-writer-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const stores: [string, () => ObjectStore][] = [
    ['directory', () => new DirStore(dir)],
    ['memory (through put)', () => new MemoryStore()],
  ];

  for (const [name, make] of stores) {
    it(`${name}: the object appears whole on commit, with the writes in call order, even when issued together`, async () => {
      const store = make();
      const w = await openObjectWriter(store, 'packs/ab/abcd');
      const piece = Buffer.from('0123456789');
      const writes = [w.write(Buffer.from('hello ')), w.write(piece), w.write(Buffer.from(' world'))];
      await Promise.all(writes);
      expect(await exists(store, 'packs/ab/abcd')).toBe(false);
      expect(await listAll(store, 'packs/')).toEqual([]);
      await w.commit();
      expect((await store.get('packs/ab/abcd')).toString()).toBe('hello 0123456789 world');
      await expect(w.write(Buffer.from('late'))).rejects.toThrow();
    });

    it(`${name}: abort leaves nothing behind`, async () => {
      const store = make();
      const w = await openObjectWriter(store, 'packs/cd/cdef');
      await w.write(Buffer.alloc(1000, 1));
      await w.abort();
      await w.abort();
      expect(await exists(store, 'packs/cd/cdef')).toBe(false);
      if (store instanceof DirStore) expect(await files(dir)).toEqual([]);
    });
  }

  it('a directory store streams; its temporary file is in the key directory until commit', async () => {
    const store = new DirStore(dir);
    expect(isStreamingStore(store)).toBe(true);
    expect(isStreamingStore(new MemoryStore())).toBe(false);
    const w = await store.openWriter('packs/ef/ef01');
    await w.write(Buffer.from('x'));
    const during = await files(dir);
    expect(during).toHaveLength(1);
    expect(during[0]!.startsWith(TEMP_PREFIX)).toBe(true);
    await w.commit();
    expect(await files(dir)).toEqual(['ef01']);
  });

  it('a directory store refuses to commit once the signal is aborted, and removes the temporary file', async () => {
    const store = new DirStore(dir);
    const controller = new AbortController();
    const w = await store.openWriter('packs/01/0123', { signal: controller.signal });
    await w.write(Buffer.from('partial'));
    controller.abort(new Error('stop'));
    await expect(w.commit()).rejects.toThrow('stop');
    expect(await files(dir)).toEqual([]);
  });

  it('rejects unsafe keys and an aborted signal up front', async () => {
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    for (const store of [new DirStore(dir), new MemoryStore()]) {
      await expect(openObjectWriter(store, '../escape')).rejects.toThrow();
      await expect(openObjectWriter(store, 'k/a', { signal: controller.signal })).rejects.toThrow('stop');
    }
  });
});
