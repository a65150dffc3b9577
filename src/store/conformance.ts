// The one conformance suite every ObjectStore implementation must pass (run from each store's test).
import { describe, expect, it } from 'vitest';
import { listAll, type ObjectStore } from './object-store.js';

export function objectStoreConformance(name: string, factory: () => Promise<{ store: ObjectStore; cleanup?: () => Promise<void> }>): void {
  describe(`${name} object store conformance`, () => {
    const withStore = async (fn: (store: ObjectStore) => Promise<void>) => {
      const { store, cleanup } = await factory();
      try {
        await fn(store);
      } finally {
        await cleanup?.();
      }
    };

    it('put then get returns the same bytes; put replaces', () =>
      withStore(async (store) => {
        await store.put('packs/ab/abcdef', Buffer.from('hello world'));
        expect((await store.get('packs/ab/abcdef')).toString()).toBe('hello world');
        await store.put('packs/ab/abcdef', Buffer.from('replaced'));
        expect((await store.get('packs/ab/abcdef')).toString()).toBe('replaced');
        expect((await store.stat('packs/ab/abcdef')).size).toBe(8);
      }));

    it('get with a range returns exactly those bytes; a range past the end fails', () =>
      withStore(async (store) => {
        await store.put('k/range', Buffer.from('0123456789'));
        expect((await store.get('k/range', { range: { offset: 3, length: 4 } })).toString()).toBe('3456');
        await expect(store.get('k/range', { range: { offset: 8, length: 5 } })).rejects.toThrow();
      }));

    it('a missing object is a NotFoundError from get and stat; delete of a missing object succeeds', () =>
      withStore(async (store) => {
        await expect(store.get('nope/x')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
        await expect(store.stat('nope/x')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
        await store.delete('nope/x');
      }));

    it('list reports each object under the prefix once', () =>
      withStore(async (store) => {
        for (const key of ['snapshots/a', 'snapshots/b', 'index/c', 'packs/00/d', 'packs/01/e']) await store.put(key, Buffer.from(key));
        expect((await listAll(store, 'snapshots/')).map((o) => o.key).sort()).toEqual(['snapshots/a', 'snapshots/b']);
        expect((await listAll(store, 'packs/')).map((o) => o.key).sort()).toEqual(['packs/00/d', 'packs/01/e']);
        const all = await listAll(store, '');
        expect(all.map((o) => o.key).sort()).toEqual(['index/c', 'packs/00/d', 'packs/01/e', 'snapshots/a', 'snapshots/b']);
        expect(all.find((o) => o.key === 'index/c')?.size).toBe(7);
        await store.delete('snapshots/a');
        expect((await listAll(store, 'snapshots/')).map((o) => o.key)).toEqual(['snapshots/b']);
      }));

    it('rejects unsafe keys', () =>
      withStore(async (store) => {
        await expect(store.put('../escape', Buffer.from('x'))).rejects.toThrow();
        await expect(store.put('/abs', Buffer.from('x'))).rejects.toThrow();
      }));

    it('refuses to start on an aborted signal', () =>
      withStore(async (store) => {
        const controller = new AbortController();
        controller.abort(new Error('stop'));
        await expect(store.put('k/a', Buffer.from('x'), { signal: controller.signal })).rejects.toThrow('stop');
      }));
  });
}
