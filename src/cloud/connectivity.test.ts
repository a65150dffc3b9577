import { describe, expect, it } from 'vitest';
import { FakeClock } from '../clock.js';
import { ConnectivityMonitor, LOST_AFTER_MS, bypassesProxy, connectivityFrom, proxyFor, type ContactStore } from './connectivity.js';

const DAY = 24 * 60 * 60 * 1000;
const T0 = Date.parse('2026-03-01T00:00:00Z');

class MemoryContactStore implements ContactStore {
  last: number | null;
  writes: number[] = [];
  constructor(last: number | null = null) {
    this.last = last;
  }
  getLastContact(): number | null {
    return this.last;
  }
  setLastContact(ms: number): void {
    this.last = ms;
    this.writes.push(ms);
  }
}

describe('connectivityFrom', () => {
  it.each([
    { name: 'never contacted', last: null, now: T0, want: 'lost' },
    { name: 'just now', last: T0, now: T0, want: 'connected' },
    { name: '14 days', last: T0, now: T0 + 14 * DAY, want: 'connected' },
    { name: 'exactly 15 days', last: T0, now: T0 + LOST_AFTER_MS, want: 'connected' },
    { name: '15 days and 1 ms', last: T0, now: T0 + LOST_AFTER_MS + 1, want: 'lost' },
    { name: '16 days', last: T0, now: T0 + 16 * DAY, want: 'lost' },
    { name: 'contact in the future', last: T0 + DAY, now: T0, want: 'connected' },
  ] as const)('$name → $want', ({ last, now, want }) => {
    expect(connectivityFrom(last, now)).toBe(want);
  });
});

describe('ConnectivityMonitor', () => {
  it('is lost after 16 days without contact, connected again after a successful probe', async () => {
    const clock = new FakeClock(T0);
    const store = new MemoryContactStore(T0);
    let up = false;
    const monitor = new ConnectivityMonitor({
      clock,
      store,
      probe: async () => {
        if (!up) throw new Error('ECONNREFUSED');
      },
    });
    expect(monitor.connectivity()).toBe('connected');
    clock.advance(16 * DAY);
    expect(await monitor.ensure()).toBe('lost');
    expect(monitor.lastError()).toBeInstanceOf(Error);
    expect(store.last).toBe(T0);
    up = true;
    expect(await monitor.ensure()).toBe('connected');
    expect(store.last).toBe(T0 + 16 * DAY);
    expect(monitor.lastError()).toBeUndefined();
  });

  it('treats a server that never reached Azure as lost until a probe succeeds', async () => {
    const clock = new FakeClock(T0);
    const store = new MemoryContactStore(null);
    const monitor = new ConnectivityMonitor({ clock, store, probe: async () => {} });
    expect(monitor.connectivity()).toBe('lost');
    expect(await monitor.probe()).toEqual({ ok: true, at: T0 });
    expect(monitor.connectivity()).toBe('connected');
  });

  it('a failed probe within 15 days keeps connectivity', async () => {
    const clock = new FakeClock(T0);
    const store = new MemoryContactStore(T0);
    const errors: unknown[] = [];
    const monitor = new ConnectivityMonitor({ clock, store, probe: async () => Promise.reject(new Error('down')), onProbeError: (e) => errors.push(e) });
    clock.advance(10 * DAY);
    const result = await monitor.probe();
    expect(result.ok).toBe(false);
    expect(errors).toHaveLength(1);
    expect(monitor.connectivity()).toBe('connected');
  });

  it('ensure() does not probe again while the last contact is fresh', async () => {
    const clock = new FakeClock(T0);
    const store = new MemoryContactStore(null);
    let probes = 0;
    const monitor = new ConnectivityMonitor({ clock, store, freshMs: 60_000, probe: async () => void probes++ });
    await monitor.ensure();
    await monitor.ensure();
    expect(probes).toBe(1);
    clock.advance(60_000);
    await monitor.ensure();
    expect(probes).toBe(2);
  });

  it('shares one probe between concurrent callers', async () => {
    const clock = new FakeClock(T0);
    const store = new MemoryContactStore(null);
    let probes = 0;
    let release!: () => void;
    const monitor = new ConnectivityMonitor({
      clock,
      store,
      probe: () => {
        probes++;
        return new Promise<void>((r) => (release = r));
      },
    });
    const a = monitor.probe();
    const b = monitor.ensure();
    release();
    await Promise.all([a, b]);
    expect(probes).toBe(1);
  });

  it('probes on its interval once started, and stops', async () => {
    const clock = new FakeClock(T0);
    const store = new MemoryContactStore(T0);
    let probes = 0;
    const monitor = new ConnectivityMonitor({ clock, store, intervalMs: DAY, probe: async () => void probes++ });
    monitor.start();
    monitor.start();
    for (let i = 0; i < 3; i++) {
      clock.advance(DAY);
      await new Promise((r) => setImmediate(r));
    }
    expect(probes).toBe(3);
    expect(store.writes).toEqual([T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY]);
    monitor.stop();
    clock.advance(3 * DAY);
    expect(probes).toBe(3);
  });

  it('never moves the last contact backwards', async () => {
    const clock = new FakeClock(T0);
    const store = new MemoryContactStore(T0 + DAY);
    const monitor = new ConnectivityMonitor({ clock, store, probe: async () => {} });
    await monitor.probe();
    expect(store.writes).toEqual([]);
  });

  it('throws an abort instead of reporting a failed probe', async () => {
    const clock = new FakeClock(T0);
    const store = new MemoryContactStore(null);
    const ac = new AbortController();
    const monitor = new ConnectivityMonitor({
      clock,
      store,
      probe: ({ signal }) =>
        new Promise<void>((_, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted by probe')), { once: true })),
    });
    const p = monitor.probe({ signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    expect(monitor.lastError()).toBeUndefined();
  });
});

describe('proxyFor', () => {
  const env = { HTTPS_PROXY: 'http://proxy.corp:3128', HTTP_PROXY: 'http://plain.corp:8080', NO_PROXY: 'localhost,.internal.example,10.0.0.1,blob.local:10000' };
  it.each([
    { name: 'env, https target', target: 'https://management.azure.com/x', proxy: undefined, want: 'http://proxy.corp:3128/' },
    { name: 'env, http target', target: 'http://example.org/', proxy: undefined, want: 'http://plain.corp:8080/' },
    { name: 'env, NO_PROXY host', target: 'https://localhost/x', proxy: undefined, want: null },
    { name: 'env, NO_PROXY domain', target: 'https://a.b.internal.example/x', proxy: undefined, want: null },
    { name: 'env, NO_PROXY domain itself', target: 'https://internal.example/x', proxy: undefined, want: null },
    { name: 'env, NO_PROXY not a suffix match', target: 'https://notinternal.example/x', proxy: undefined, want: 'http://proxy.corp:3128/' },
    { name: 'env, NO_PROXY ip', target: 'http://10.0.0.1/x', proxy: undefined, want: null },
    { name: 'env, NO_PROXY port matches', target: 'http://blob.local:10000/x', proxy: undefined, want: null },
    { name: 'env, NO_PROXY port differs', target: 'http://blob.local:10001/x', proxy: undefined, want: 'http://plain.corp:8080/' },
    { name: 'null ignores env', target: 'https://management.azure.com/', proxy: null, want: null },
    { name: 'string', target: 'https://localhost/', proxy: 'proxy2:8888', want: 'http://proxy2:8888/' },
    { name: 'object with noProxy', target: 'https://x.azure.com/', proxy: { url: 'http://p:1', noProxy: ['azure.com'] }, want: null },
  ])('$name', ({ target, proxy, want }) => {
    expect(proxyFor(target, proxy, env)?.url.href ?? null).toBe(want);
  });

  it('carries credentials as a Proxy-Authorization header, not in the URL', () => {
    const fromUrl = proxyFor('https://x/', 'http://al%40ice:s3cret@p:3128', {});
    expect(fromUrl?.url.href).toBe('http://p:3128/');
    expect(fromUrl?.authorization).toBe(`Basic ${Buffer.from('al@ice:s3cret').toString('base64')}`);
    const fromObject = proxyFor('https://x/', { url: 'http://p:3128', username: 'bob', password: 'pw' }, {});
    expect(fromObject?.authorization).toBe(`Basic ${Buffer.from('bob:pw').toString('base64')}`);
  });

  it('uses no proxy when the environment names none', () => {
    expect(proxyFor('https://x/', undefined, {})).toBeNull();
  });

  it('understands * and IPv6 entries in NO_PROXY', () => {
    expect(bypassesProxy(new URL('https://anything/'), '*')).toBe(true);
    expect(bypassesProxy(new URL('http://[::1]:8080/'), '::1')).toBe(true);
    expect(bypassesProxy(new URL('http://[::1]:8080/'), '[::1]:8080')).toBe(true);
    expect(bypassesProxy(new URL('http://[::1]:8080/'), '[::1]:9090')).toBe(false);
  });
});
