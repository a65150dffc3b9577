import { describe, expect, it } from 'vitest';
import { FakeClock } from '../clock.js';
import { IntegrityError, NotFoundError, StrataError } from '../errors.js';
import { objectStoreConformance } from './conformance.js';
import { FaultStore } from './fault-store.js';
import { MemoryStore } from './memory-store.js';
import { listAll } from './object-store.js';
import { isPermanentError, RetryStore, type RetryInfo } from './retry-store.js';

const transient = () => new StrataError('STRATA_VAULT_NETWORK', 'connection reset', { kind: 'failed' });
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Advances the fake clock until `promise` settles (bounded), returning the fake time it took. */
async function timeOf(clock: FakeClock, promise: Promise<unknown>, limitMs = 600_000): Promise<number> {
  const start = clock.now();
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await settle();
  while (!done) {
    if (clock.now() - start > limitMs) throw new Error('did not settle in time');
    clock.advance(10);
    await settle();
  }
  return clock.now() - start;
}

objectStoreConformance('retrying memory', async () => ({ store: new RetryStore(new MemoryStore(), { baseDelayMs: 1 }) }));

describe('RetryStore', () => {
  it('retries transient failures with growing, jittered backoff and reports each retry', async () => {
    const clock = new FakeClock(0);
    const faulty = new FaultStore(new MemoryStore());
    faulty.on('put').errorInstead(transient).repeat(3);
    const retries: RetryInfo[] = [];
    const store = new RetryStore(faulty, { clock, baseDelayMs: 100, random: () => 0.5, onRetry: (info) => retries.push(info) });
    const took = await timeOf(clock, store.put('k/a', Buffer.from('x')));
    expect((await store.get('k/a')).toString()).toBe('x');
    expect(retries.map((r) => [r.op, r.key, r.attempt, r.delayMs])).toEqual([
      ['put', 'k/a', 1, 75],
      ['put', 'k/a', 2, 150],
      ['put', 'k/a', 3, 300],
    ]);
    expect(took).toBeGreaterThanOrEqual(525);
    expect(store.counters).toEqual({ retries: 3, byOperation: { put: 3, get: 0, stat: 0, list: 0, delete: 0 }, gaveUp: 0 });
    expect(faulty.calls.put).toBe(4);
  });

  it('caps the delay and gives up after maxAttempts with the last error', async () => {
    const clock = new FakeClock(0);
    const faulty = new FaultStore(new MemoryStore());
    faulty.on('get').errorInstead(transient).always();
    const delays: number[] = [];
    const store = new RetryStore(faulty, { clock, maxAttempts: 5, baseDelayMs: 1000, maxDelayMs: 3000, random: () => 0.999, onRetry: (i) => delays.push(i.delayMs) });
    const get = store.get('k/a');
    get.catch(() => {});
    await timeOf(clock, get);
    await expect(get).rejects.toMatchObject({ code: 'STRATA_VAULT_NETWORK' });
    expect(faulty.calls.get).toBe(5);
    expect(delays.every((d) => d <= 3000)).toBe(true);
    expect(delays[3]).toBeGreaterThan(2900);
    expect(store.resetCounters()).toMatchObject({ retries: 4, gaveUp: 1 });
    expect(store.counters.retries).toBe(0);
  });

  it.each([
    ['not found', () => new NotFoundError('k/a')],
    ['auth refused', () => new StrataError('STRATA_VAULT_AUTH', 'refused', { kind: 'input' })],
    ['bad range', () => new RangeError('outside')],
    ['integrity', () => new IntegrityError('damaged')],
    ['permission', () => Object.assign(new Error('EACCES'), { code: 'EACCES' })],
  ])('never retries a permanent error: %s', async (_, error) => {
    const faulty = new FaultStore(new MemoryStore());
    faulty.on('*').errorInstead(error).always();
    const store = new RetryStore(faulty, { clock: new FakeClock(0) });
    await expect(store.stat('k/a')).rejects.toThrow(error().message);
    expect(faulty.calls.stat).toBe(1);
    expect(store.counters.retries).toBe(0);
    expect(isPermanentError(error())).toBe(true);
  });

  it('classifies transient errors', () => {
    expect(isPermanentError(transient())).toBe(false);
    expect(isPermanentError(new StrataError('STRATA_VAULT_TIMEOUT', 't', { kind: 'failed' }))).toBe(false);
    expect(isPermanentError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe(false);
    expect(isPermanentError(new StrataError('STRATA_VAULT_CONTAINER_MISSING', 'x', { kind: 'input' }))).toBe(true);
  });

  it('never starts on an aborted signal, and stops backing off when aborted', async () => {
    const clock = new FakeClock(0);
    const faulty = new FaultStore(new MemoryStore());
    faulty.on('delete').errorInstead(transient).always();
    const store = new RetryStore(faulty, { clock, baseDelayMs: 10_000 });
    const early = new AbortController();
    early.abort(new Error('before'));
    await expect(store.put('k/a', Buffer.from('x'), { signal: early.signal })).rejects.toThrow('before');
    expect(faulty.calls.put).toBe(0);
    const controller = new AbortController();
    const del = store.delete('k/a', { signal: controller.signal });
    await settle();
    expect(faulty.calls.delete).toBe(1);
    controller.abort(new Error('during backoff'));
    await expect(del).rejects.toThrow('during backoff');
    expect(faulty.calls.delete).toBe(1);
  });

  it('refuses invalid keys without calling the inner store', async () => {
    const faulty = new FaultStore(new MemoryStore());
    const store = new RetryStore(faulty, { clock: new FakeClock(0) });
    await expect(store.get('../x')).rejects.toThrow(/invalid object key/);
    expect(faulty.calls.get).toBe(0);
  });

  it('restarts a failed listing and reports each object once', async () => {
    const clock = new FakeClock(0);
    const inner = new MemoryStore();
    for (let i = 0; i < 10; i++) await inner.put(`packs/${i}`, Buffer.from([i]));
    const faulty = new FaultStore(inner);
    faulty.on('list').errorAfterItems(4, transient).repeat(2);
    const store = new RetryStore(faulty, { clock, baseDelayMs: 1 });
    const listing = listAll(store, 'packs/');
    await timeOf(clock, listing);
    const keys = (await listing).map((o) => o.key);
    expect(keys.length).toBe(10);
    expect(new Set(keys).size).toBe(10);
    expect(faulty.calls.list).toBe(3);
    expect(store.counters.byOperation.list).toBe(2);
  });
});
