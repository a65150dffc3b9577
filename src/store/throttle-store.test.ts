import { describe, expect, it } from 'vitest';
import { FakeClock } from '../clock.js';
import { parseBandwidthSchedule } from './bandwidth-schedule.js';
import { MemoryStore } from './memory-store.js';
import { objectStoreConformance } from './conformance.js';
import { ThrottleStore } from './throttle-store.js';

const KB = 1000;

/** Lets pending promise callbacks run (the fake clock only moves when told). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Advances the fake clock in steps until `promise` settles; returns the fake time it took. Bounded by `limitMs`. */
async function timeOf(clock: FakeClock, promise: Promise<unknown>, stepMs = 50, limitMs = 120_000): Promise<number> {
  const start = clock.now();
  let done = false;
  let failure: unknown;
  promise.then(
    () => (done = true),
    (err) => {
      done = true;
      failure = err;
    },
  );
  await settle();
  while (!done) {
    if (clock.now() - start > limitMs) throw new Error('did not settle in time');
    clock.advance(stepMs);
    await settle();
  }
  if (failure) throw failure;
  return clock.now() - start;
}

objectStoreConformance('throttled memory', async () => ({ store: new ThrottleStore(new MemoryStore(), { upload: 1e9, download: 1e9 }) }));

describe('ThrottleStore', () => {
  it('limits put bytes per second after the first burst', async () => {
    const clock = new FakeClock(0);
    const store = new ThrottleStore(new MemoryStore(), { upload: 100 * KB, clock });
    const puts = Promise.all(Array.from({ length: 10 }, (_, i) => store.put(`k/${i}`, new Uint8Array(100 * KB))));
    const took = await timeOf(clock, puts);
    // 1 s of burst free, then 900 KB at 100 KB/s.
    expect(took).toBeGreaterThanOrEqual(9000);
    expect(took).toBeLessThanOrEqual(9100);
    expect(store.counters.uploadedBytes).toBe(1000 * KB);
  });

  it('keeps upload and download apart', async () => {
    const clock = new FakeClock(0);
    const inner = new MemoryStore();
    await inner.put('k/big', new Uint8Array(500 * KB));
    const store = new ThrottleStore(inner, { upload: 10 * KB, download: 250 * KB, clock });
    expect(await timeOf(clock, store.get('k/big'))).toBeLessThanOrEqual(1050); // 250 KB burst + 250 KB at 250 KB/s
    expect(await timeOf(clock, store.get('k/big', { range: { offset: 0, length: 250 * KB } }))).toBeGreaterThanOrEqual(950);
    expect(await timeOf(clock, store.stat('k/big'))).toBe(0);
    expect(await timeOf(clock, store.put('k/small', new Uint8Array(10 * KB)))).toBe(0);
  });

  it('re-reads the rate from the schedule: a wait ends soon after the work window does', async () => {
    // Monday 2026-03-02 17:59:00 UTC; work hours end at 18:00, then unlimited.
    const clock = new FakeClock(Date.parse('2026-03-02T17:59:00Z'));
    const schedule = parseBandwidthSchedule({ workHours: '08:00-18:00', workDays: 'mon-fri', workMbps: 1, otherMbps: 0 }, { timeZone: 'UTC' });
    const store = new ThrottleStore(new MemoryStore(), { upload: schedule, download: schedule, clock });
    // 1 Mbps = 125 KB/s: 100 MB would take ~13 minutes at the work rate.
    const took = await timeOf(clock, store.put('k/huge', new Uint8Array(100_000 * KB)), 100);
    expect(took).toBeGreaterThanOrEqual(60_000);
    expect(took).toBeLessThanOrEqual(61_100);
    // After hours: no waiting at all.
    expect(await timeOf(clock, store.put('k/huge2', new Uint8Array(100_000 * KB)))).toBe(0);
  });

  it('serves takers in order and returns the tokens of an aborted wait', async () => {
    const clock = new FakeClock(0);
    const store = new ThrottleStore(new MemoryStore(), { upload: 100 * KB, burstMs: 0, clock });
    const order: string[] = [];
    const first = store.put('k/1', new Uint8Array(200 * KB)).then(() => order.push('first'));
    const controller = new AbortController();
    const aborted = store.put('k/2', new Uint8Array(500 * KB), { signal: controller.signal });
    const third = store.put('k/3', new Uint8Array(100 * KB)).then(() => order.push('third'));
    await settle();
    controller.abort(new Error('no more'));
    await expect(aborted).rejects.toThrow('no more');
    const took = await timeOf(clock, Promise.all([first, third]));
    expect(order).toEqual(['first', 'third']);
    // 300 KB at 100 KB/s: the aborted 500 KB were never charged.
    expect(took).toBeGreaterThanOrEqual(3000);
    expect(took).toBeLessThanOrEqual(3100);
    await expect(store.stat('k/2')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
  });

  it('does not wait at all when unlimited', async () => {
    const clock = new FakeClock(0);
    const store = new ThrottleStore(new MemoryStore(), { upload: 0, clock });
    expect(await timeOf(clock, store.put('k/a', new Uint8Array(10_000 * KB)))).toBe(0);
    expect(store.upload.rate()).toBe(Infinity);
  });
});
