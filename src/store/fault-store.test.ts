import { describe, expect, it } from 'vitest';
import { FakeClock } from '../clock.js';
import { objectStoreConformance } from './conformance.js';
import { FaultStore } from './fault-store.js';
import { MemoryStore } from './memory-store.js';
import { listAll } from './object-store.js';

objectStoreConformance('fault store (no rules)', async () => ({ store: new FaultStore(new MemoryStore()) }));

describe('FaultStore', () => {
  it('errorInstead fails the next n matching calls without reaching the inner store', async () => {
    const inner = new MemoryStore();
    const store = new FaultStore(inner);
    const rule = store.on('put', /^packs\//).errorInstead(new Error('boom')).repeat(2);
    await expect(store.put('packs/a', Buffer.from('1'))).rejects.toThrow('boom');
    await store.put('index/a', Buffer.from('other keys pass'));
    await expect(store.put('packs/a', Buffer.from('2'))).rejects.toThrow('boom');
    await store.put('packs/a', Buffer.from('3'));
    expect((await inner.get('packs/a')).toString()).toBe('3');
    expect(rule.fired).toBe(2);
    expect(store.calls.put).toBe(4);
  });

  it('errorAfter does the work, then fails; afterCalls lets calls through first', async () => {
    const inner = new MemoryStore();
    const store = new FaultStore(inner);
    store.on(['put', 'delete'], 'k/').errorAfter(() => new Error('reply lost')).afterCalls(1).repeat(1);
    await store.put('k/a', Buffer.from('first'));
    await expect(store.put('k/a', Buffer.from('second'))).rejects.toThrow('reply lost');
    expect((await inner.get('k/a')).toString()).toBe('second');
    await store.delete('k/a');
  });

  it('delays on its clock, corrupts gets, and fails listings part way', async () => {
    const clock = new FakeClock(0);
    const inner = new MemoryStore();
    for (const k of ['a/1', 'a/2', 'a/3']) await inner.put(k, Buffer.from('abc'));
    const store = new FaultStore(inner, { clock });
    store.on('stat').delay(5000);
    let done = false;
    const stat = store.stat('a/1').then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    clock.advance(5000);
    await stat;
    store.on('get').corrupt();
    expect((await store.get('a/1')).toString()).not.toBe('abc');
    expect((await store.get('a/1')).toString()).toBe('abc');
    store.on('list').errorAfterItems(2, new Error('list broke'));
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const info of store.list('a/')) seen.push(info.key);
      })(),
    ).rejects.toThrow('list broke');
    expect(seen.length).toBe(2);
    expect((await listAll(store, 'a/')).length).toBe(3);
  });

  it('applies the first matching rule only, and clear removes all', async () => {
    const store = new FaultStore(new MemoryStore());
    store.on('*').errorInstead(new Error('first'));
    store.on('*').errorInstead(new Error('second'));
    await expect(store.stat('x/y')).rejects.toThrow('first');
    await expect(store.stat('x/y')).rejects.toThrow('second');
    store.on('*').errorInstead(new Error('third')).always();
    store.clear();
    await expect(store.stat('x/y')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
  });
});
