import { createServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../clock.js';
import { StrataError } from '../errors.js';
import { startArmServer, type ArmServer, type ArmState } from '../../test/helpers/arm-server.js';
import {
  ArmSubscriptionProvider,
  StaticSubscriptionProvider,
  createSubscriptionProvider,
  trackSince,
  type ArmSubscriptionProviderOptions,
} from './subscription.js';

const T0 = Date.parse('2026-11-02T10:00:00Z');
const MIN = 60_000;

/** A test double for the Entra ID token only; the HTTP service is the real loopback ARM server. */
class FakeCredential implements TokenCredential {
  scopes: (string | string[])[] = [];
  constructor(
    private token = 'test-token',
    private failure?: unknown,
  ) {}
  async getToken(scopes: string | string[], _options?: GetTokenOptions): Promise<AccessToken | null> {
    this.scopes.push(scopes);
    if (this.failure) throw this.failure;
    return { token: this.token, expiresOnTimestamp: T0 + 3600_000 };
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function arm(state: ArmState = 'Enabled', token?: string): Promise<ArmServer> {
  const server = await startArmServer(token === undefined ? { state } : { state, token });
  cleanups.push(() => server.close());
  return server;
}

function provider(server: ArmServer, extra: Partial<ArmSubscriptionProviderOptions> = {}) {
  const clock = (extra.clock as FakeClock | undefined) ?? new FakeClock(T0);
  const credential = (extra.credential as FakeCredential | undefined) ?? new FakeCredential();
  const p = new ArmSubscriptionProvider({
    subscriptionId: server.subscriptionId,
    managementEndpoint: server.endpoint,
    credential,
    clock,
    proxy: null,
    ...extra,
  });
  return { p, clock, credential };
}

async function rejection(promise: Promise<unknown>): Promise<StrataError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(StrataError);
    return err as StrataError;
  }
  throw new Error('expected a rejection');
}

describe('StaticSubscriptionProvider', () => {
  it.each(['active', 'expired', 'deprovisioned'] as const)('reports %s', async (state) => {
    expect(await new StaticSubscriptionProvider(state).current()).toEqual({ state, source: 'static' });
  });
});

describe('ArmSubscriptionProvider against a loopback ARM', () => {
  it.each([
    ['Enabled', 'active'],
    ['Warned', 'active'],
    ['PastDue', 'active'],
    ['Disabled', 'expired'],
    ['Deleted', 'deprovisioned'],
  ] as const)('ARM state %s → %s', async (armState, want) => {
    const server = await arm(armState);
    const { p, credential } = provider(server);
    const status = await p.current();
    expect(status).toEqual({ state: want, source: `arm (${armState})`, stale: false, checkedAt: T0 });
    expect(server.urls).toEqual([`/subscriptions/${server.subscriptionId}?api-version=2022-12-01`]);
    expect(server.tokens).toEqual(['test-token']);
    expect(credential.scopes).toEqual([`${server.endpoint}/.default`]);
  });

  it('rejects a state it does not know', async () => {
    const server = await arm('Suspended');
    const e = await rejection(provider(server).p.current());
    expect(e.code).toBe('STRATA_SUBSCRIPTION_UNKNOWN');
    expect(e.message).toContain('"Suspended"');
  });

  it('caches the answer for cacheMs, then asks again', async () => {
    const server = await arm('Enabled');
    const { p, clock } = provider(server, { cacheMs: 15 * MIN });
    expect((await p.current()).state).toBe('active');
    server.state = 'Disabled';
    clock.advance(15 * MIN - 1);
    expect((await p.current()).state).toBe('active');
    expect(server.requests).toBe(1);
    clock.advance(1);
    expect((await p.current()).state).toBe('expired');
    expect(server.requests).toBe(2);
    p.invalidate();
    server.state = 'Enabled';
    expect((await p.current()).state).toBe('active');
  });

  it('shares one request between concurrent callers', async () => {
    const server = await arm('Enabled');
    const { p } = provider(server);
    const answers = await Promise.all([p.current(), p.current(), p.current()]);
    expect(answers.map((a) => a.state)).toEqual(['active', 'active', 'active']);
    expect(server.requests).toBe(1);
  });

  it('returns the last answer, marked stale, when ARM becomes unreachable', async () => {
    const server = await arm('Disabled');
    const { p, clock } = provider(server, { cacheMs: MIN });
    await p.current();
    await server.close();
    clock.advance(MIN);
    const status = await p.current();
    expect(status.state).toBe('expired');
    expect(status.stale).toBe(true);
    expect(status.checkedAt).toBe(T0);
    expect(status.source).toMatch(/^arm \(Disabled\), last answer at 2026-11-02T10:00:00.000Z; ARM unreachable: /);
  });

  it('throws unreachable when ARM cannot be reached and nothing is cached', async () => {
    const server = await arm();
    const endpoint = server.endpoint;
    await server.close();
    const clock = new FakeClock(T0);
    const p = new ArmSubscriptionProvider({ subscriptionId: 'x', managementEndpoint: endpoint, credential: new FakeCredential(), clock, proxy: null });
    const e = await rejection(p.current());
    expect(e.code).toBe('STRATA_SUBSCRIPTION_UNREACHABLE');
    expect(e.kind).toBe('failed');
    expect(e.message).toContain(`cannot reach ARM (${endpoint})`);
  });

  it('treats 5xx and 429 as unreachable: stale with a cache, an error without', async () => {
    const server = await arm('Enabled');
    const { p, clock } = provider(server, { cacheMs: MIN });
    server.failNext(1, 503);
    expect((await rejection(p.current())).code).toBe('STRATA_SUBSCRIPTION_UNREACHABLE');
    expect((await p.current()).stale).toBe(false);
    clock.advance(MIN);
    server.failNext(1, 429);
    const stale = await p.current();
    expect(stale.stale).toBe(true);
    expect(stale.source).toContain('HTTP 429');
  });

  it('times out on the injected clock', async () => {
    const server = await arm('Enabled');
    const { p, clock } = provider(server, { timeoutMs: 30_000 });
    server.hangNext(1);
    const pending = p.current();
    while (server.requests === 0) await new Promise((r) => setImmediate(r));
    clock.advance(30_000);
    const e = await rejection(pending);
    expect(e.code).toBe('STRATA_SUBSCRIPTION_UNREACHABLE');
    expect(e.message).toContain('no answer from ARM within 30000 ms');
  });

  it('lets a caller abandon its wait', async () => {
    const server = await arm('Enabled');
    const { p, clock } = provider(server);
    server.hangNext(1);
    const ac = new AbortController();
    const pending = p.current({ signal: ac.signal });
    ac.abort(new Error('user cancelled'));
    await expect(pending).rejects.toThrow('user cancelled');
    clock.advance(30_000); // let the shared request time out
  });

  it('reports a refused token as an auth error, never as stale', async () => {
    const server = await arm('Enabled', 'the-right-token');
    const e = await rejection(provider(server, { credential: new FakeCredential('a-wrong-token') }).p.current());
    expect(e.code).toBe('STRATA_SUBSCRIPTION_AUTH');
    expect(e.kind).toBe('input');
    expect(e.message).toContain('HTTP 401 InvalidAuthenticationToken');
  });

  it('reports an unknown subscription as not found, not as deprovisioned', async () => {
    const server = await arm('Enabled');
    const { p } = provider(server, { subscriptionId: 'ffffffff-0000-0000-0000-000000000000' });
    const e = await rejection(p.current());
    expect(e.code).toBe('STRATA_SUBSCRIPTION_NOT_FOUND');
    expect(e.message).toContain('SubscriptionNotFound');
  });

  it('tells a refused token request from an unreachable token endpoint', async () => {
    const server = await arm('Enabled');
    const refused = Object.assign(new Error('AADSTS7000215: Invalid client secret provided.'), { statusCode: 401 });
    expect((await rejection(provider(server, { credential: new FakeCredential('t', refused) }).p.current())).code).toBe('STRATA_SUBSCRIPTION_AUTH');
    const network = new Error('getaddrinfo ENOTFOUND login.microsoftonline.com');
    expect((await rejection(provider(server, { credential: new FakeCredential('t', network) }).p.current())).code).toBe('STRATA_SUBSCRIPTION_UNREACHABLE');
    expect(server.requests).toBe(0);
  });

  it('uses an injected fetch, passing the dispatcher through', async () => {
    const server = await arm('Deleted');
    const inits: RequestInit[] = [];
    const dispatcher = { name: 'a proxy agent' };
    const fetchSpy: typeof fetch = (input, init) => {
      inits.push(init!);
      const { dispatcher: _d, ...rest } = init as RequestInit & { dispatcher?: unknown };
      return globalThis.fetch(input, rest);
    };
    const { p } = provider(server, { fetch: fetchSpy, dispatcher });
    expect((await p.current()).state).toBe('deprovisioned');
    expect((inits[0] as { dispatcher?: unknown }).dispatcher).toBe(dispatcher);
    expect(new Headers(inits[0]!.headers).get('authorization')).toBe('Bearer test-token');
  });
});

/** A loopback HTTP proxy that only tunnels (CONNECT), optionally requiring Basic credentials. */
async function startConnectProxy(requiredAuth?: string) {
  const connects: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((_req, res) => {
    res.writeHead(405);
    res.end();
  });
  server.on('connect', (req, client: Socket, head: Buffer) => {
    sockets.add(client);
    connects.push(req.url ?? '');
    if (requiredAuth && req.headers['proxy-authorization'] !== requiredAuth) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const [host, port] = (req.url ?? '').split(':') as [string, string];
    const upstream = connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = () => {
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  cleanups.push(close);
  return { url, connects };
}

describe('ArmSubscriptionProvider through a proxy', () => {
  it('tunnels through the configured proxy', async () => {
    const server = await arm('Enabled');
    const proxy = await startConnectProxy();
    const { p } = provider(server, { proxy: proxy.url });
    expect((await p.current()).state).toBe('active');
    expect(proxy.connects).toEqual([new URL(server.endpoint).host]);
    expect(server.tokens).toEqual(['test-token']);
  });

  it('sends proxy credentials, and reports a proxy refusal as unreachable', async () => {
    const server = await arm('Enabled');
    const auth = `Basic ${Buffer.from('alice:pw').toString('base64')}`;
    const proxy = await startConnectProxy(auth);
    const withCreds = provider(server, { proxy: { url: proxy.url, username: 'alice', password: 'pw' } });
    expect((await withCreds.p.current()).state).toBe('active');
    const without = provider(server, { proxy: proxy.url });
    const e = await rejection(without.p.current());
    expect(e.code).toBe('STRATA_SUBSCRIPTION_UNREACHABLE');
    expect(e.message).toContain('HTTP 407');
  });

  it('speaks TLS inside the tunnel to an https endpoint', async () => {
    // The loopback ARM speaks plain HTTP, so the TLS handshake inside the tunnel must fail, as unreachable.
    const server = await arm('Enabled');
    const proxy = await startConnectProxy();
    const httpsEndpoint = server.endpoint.replace('http:', 'https:');
    const { p } = provider(server, { managementEndpoint: httpsEndpoint, proxy: proxy.url });
    const e = await rejection(p.current());
    expect(proxy.connects).toEqual([new URL(server.endpoint).host]);
    expect(e.code).toBe('STRATA_SUBSCRIPTION_UNREACHABLE');
    expect(server.tokens).toEqual([]);
  });

  it('follows HTTP_PROXY and NO_PROXY from the environment when the config names no proxy', async () => {
    const server = await arm('Enabled');
    const proxy = await startConnectProxy();
    const viaEnv = new ArmSubscriptionProvider({
      subscriptionId: server.subscriptionId,
      managementEndpoint: server.endpoint,
      credential: new FakeCredential(),
      clock: new FakeClock(T0),
      env: { HTTP_PROXY: proxy.url },
    });
    await viaEnv.current();
    expect(proxy.connects).toHaveLength(1);
    const bypass = new ArmSubscriptionProvider({
      subscriptionId: server.subscriptionId,
      managementEndpoint: server.endpoint,
      credential: new FakeCredential(),
      clock: new FakeClock(T0),
      env: { HTTP_PROXY: proxy.url, NO_PROXY: '127.0.0.1' },
    });
    await bypass.current();
    expect(proxy.connects).toHaveLength(1);
    expect(server.requests).toBe(2);
  });
});

describe('createSubscriptionProvider', () => {
  const deps = { clock: new FakeClock(T0), proxy: null };

  it('builds a static provider from the config', async () => {
    const p = createSubscriptionProvider({ provider: 'static', state: 'expired' }, {}, deps);
    expect(p).toBeInstanceOf(StaticSubscriptionProvider);
    expect((await p.current()).state).toBe('expired');
  });

  it('builds an ARM provider from the config and the vault', async () => {
    const server = await arm('Disabled');
    const clock = new FakeClock(T0);
    const p = createSubscriptionProvider(
      { provider: 'arm', managementEndpoint: server.endpoint, cacheMinutes: 1 },
      { subscriptionId: server.subscriptionId, credential: new FakeCredential() },
      { clock, proxy: null },
    );
    expect((await p.current()).state).toBe('expired');
    clock.advance(MIN);
    await p.current();
    expect(server.requests).toBe(2);
  });

  it.each([
    ['no subscription id', { credential: new FakeCredential() }, /name no subscription/],
    ['no credential', { subscriptionId: 'x' }, /no Entra ID identity/],
  ])('refuses arm with %s', (_name, vault, message) => {
    let caught: unknown;
    try {
      createSubscriptionProvider({ provider: 'arm' }, vault, deps);
    } catch (err) {
      caught = err;
    }
    expect((caught as StrataError).code).toBe('STRATA_SUBSCRIPTION_CONFIG');
    expect((caught as StrataError).kind).toBe('usage');
    expect((caught as Error).message).toMatch(message);
  });
});

describe('trackSince', () => {
  it.each([
    ['first answer', null, 'active', 500, 500],
    ['same state keeps its since', { state: 'expired', since: 100 }, 'expired', 500, 100],
    ['a change starts now', { state: 'active', since: 100 }, 'expired', 500, 500],
    ['same state without a since', { state: 'active' }, 'active', 500, 500],
  ] as const)('%s', (_name, previous, state, now, want) => {
    expect(trackSince(previous, state, now)).toBe(want);
  });
});
