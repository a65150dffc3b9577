// The subscription state behind the vault: fixed by config (static) or asked of Azure Resource Manager (arm).
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { TokenCredential } from '@azure/identity';
import type { Clock } from '../clock.js';
import type { ProxyConfig, StrataConfig, SubscriptionState } from '../config/types.js';
import { StrataError, errorMessage, throwIfAborted } from '../errors.js';
import { proxyFor, type ResolvedProxy } from './connectivity.js';

export interface SubscriptionStatus {
  state: SubscriptionState;
  /** Epoch ms since when the state holds, when known (see `trackSince`). */
  since?: number;
  /** Where the answer came from, for `strata cloud status`: "static", or "arm (Enabled)" and the like. */
  source: string;
  /** True when ARM could not be reached and this is the last answer it gave (at `checkedAt`). */
  stale?: boolean;
  /** Epoch ms at which the answer was obtained (absent for static). */
  checkedAt?: number;
}

export interface SubscriptionProvider {
  /**
   * The subscription state now. Rejects with a StrataError when no answer can be given: the codes are
   * STRATA_SUBSCRIPTION_UNREACHABLE, _AUTH, _NOT_FOUND, _UNKNOWN and _ERROR (see ArmSubscriptionProvider).
   */
  current(options?: { signal?: AbortSignal }): Promise<SubscriptionStatus>;
}

/** A fixed state from the config, for vaults with no subscription behind them (Azurite, the demo). */
export class StaticSubscriptionProvider implements SubscriptionProvider {
  readonly #state: SubscriptionState;
  constructor(state: SubscriptionState) {
    this.#state = state;
  }
  async current(): Promise<SubscriptionStatus> {
    return { state: this.#state, source: 'static' };
  }
}

/** ARM subscription states (Microsoft.Resources, api-version 2022-12-01) → strata's, compared ignoring case. */
export const ARM_STATES: Readonly<Record<string, SubscriptionState>> = {
  enabled: 'active',
  warned: 'active',
  pastdue: 'active',
  disabled: 'expired',
  deleted: 'deprovisioned',
};

export const ARM_API_VERSION = '2022-12-01';
export const DEFAULT_MANAGEMENT_ENDPOINT = 'https://management.azure.com';

export interface ArmSubscriptionProviderOptions {
  subscriptionId: string;
  /** Default: https://management.azure.com. The token scope is `{managementEndpoint}/.default`. */
  managementEndpoint?: string;
  credential: TokenCredential;
  clock: Clock;
  /** How long an answer is reused without asking ARM again. Default: 15 minutes. */
  cacheMs?: number;
  /** A request (token and GET) that takes longer fails as unreachable. Default: 30 seconds, on `clock`. */
  timeoutMs?: number;
  /**
   * A fetch to use instead of the built-in transport (node:http/https). With it, proxying is the fetch's
   * business: pass `dispatcher` (for Node's fetch, an undici Dispatcher such as a ProxyAgent).
   */
  fetch?: typeof fetch;
  /** Passed as `dispatcher` in the fetch init; using it selects the fetch transport (globalThis.fetch unless `fetch` is given). */
  dispatcher?: unknown;
  /**
   * The built-in transport's proxy, as the config's `proxy` (see `proxyFor`: absent = HTTPS_PROXY/NO_PROXY
   * from `env`, null = direct). Through a proxy, the request goes in a CONNECT tunnel (TLS inside for https).
   */
  proxy?: ProxyConfig;
  env?: NodeJS.ProcessEnv;
}

interface HttpAnswer {
  status: number;
  body: string;
}

/**
 * Asks ARM for the subscription's state: GET `{endpoint}/subscriptions/{id}?api-version=2022-12-01` with a
 * bearer token for `{endpoint}/.default`. `state` Enabled, Warned, PastDue → active; Disabled → expired;
 * Deleted → deprovisioned.
 *
 * - An answer is reused for `cacheMs`; concurrent calls share one request.
 * - Network failure, timeout, HTTP 408/429/5xx, or a token request that got no HTTP answer: the last answer
 *   is returned marked `stale`, or, with none, STRATA_SUBSCRIPTION_UNREACHABLE is thrown.
 * - HTTP 401/403, or a token request refused (4xx): STRATA_SUBSCRIPTION_AUTH.
 * - HTTP 404: STRATA_SUBSCRIPTION_NOT_FOUND. A subscription ARM does not know is never taken for
 *   deprovisioned: that would delete cloud recovery points on a typo.
 * - Any other state string: STRATA_SUBSCRIPTION_UNKNOWN; any other HTTP status: STRATA_SUBSCRIPTION_ERROR.
 * These errors are not softened by a cached answer: they need someone to fix something.
 */
export class ArmSubscriptionProvider implements SubscriptionProvider {
  readonly #subscriptionId: string;
  readonly #endpoint: string;
  readonly #credential: TokenCredential;
  readonly #clock: Clock;
  readonly #cacheMs: number;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch | undefined;
  readonly #dispatcher: unknown;
  readonly #proxy: ProxyConfig | undefined;
  readonly #env: NodeJS.ProcessEnv;
  #cached: SubscriptionStatus | null = null;
  #inFlight: Promise<SubscriptionStatus> | null = null;

  constructor(options: ArmSubscriptionProviderOptions) {
    this.#subscriptionId = options.subscriptionId;
    this.#endpoint = (options.managementEndpoint ?? DEFAULT_MANAGEMENT_ENDPOINT).replace(/\/+$/, '');
    this.#credential = options.credential;
    this.#clock = options.clock;
    this.#cacheMs = options.cacheMs ?? 15 * 60 * 1000;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#dispatcher = options.dispatcher;
    this.#fetch = options.fetch ?? (options.dispatcher !== undefined ? globalThis.fetch : undefined);
    this.#proxy = options.proxy;
    this.#env = options.env ?? process.env;
  }

  get url(): string {
    return `${this.#endpoint}/subscriptions/${encodeURIComponent(this.#subscriptionId)}?api-version=${ARM_API_VERSION}`;
  }

  /**
   * See the class comment. Concurrent callers share one request; a caller's `signal` abandons its own wait
   * (rejecting with the signal's reason) while the request, bounded by `timeoutMs`, completes for the others.
   */
  async current(options: { signal?: AbortSignal } = {}): Promise<SubscriptionStatus> {
    throwIfAborted(options.signal);
    const cached = this.#cached;
    if (cached && this.#clock.now() - cached.checkedAt! < this.#cacheMs) return cached;
    this.#inFlight ??= this.#refresh().finally(() => {
      this.#inFlight = null;
    });
    return raceAbort(this.#inFlight, options.signal);
  }

  /** Forgets the cached answer, so the next `current()` asks ARM. */
  invalidate(): void {
    this.#cached = null;
  }

  async #refresh(): Promise<SubscriptionStatus> {
    let answer: HttpAnswer;
    try {
      answer = await this.#withTimeout((signal) => this.#ask(signal));
    } catch (err) {
      if (err instanceof StrataError && err.code !== 'STRATA_SUBSCRIPTION_UNREACHABLE') throw err;
      return this.#staleOr(err);
    }
    const { status, body } = answer;
    if (status === 200) return this.#accept(body);
    const armCode = armErrorCode(body);
    const detail = `HTTP ${status}${armCode ? ` ${armCode}` : ''}`;
    if (status === 408 || status === 429 || status >= 500) {
      return this.#staleOr(new StrataError('STRATA_SUBSCRIPTION_UNREACHABLE', `ARM answered ${detail}`, { kind: 'failed' }));
    }
    if (status === 401 || status === 403) {
      throw new StrataError(
        'STRATA_SUBSCRIPTION_AUTH',
        `ARM refused to read subscription ${this.#subscriptionId} (${detail}); give the vault credentials' identity the Reader role on it, or set subscription.provider to "static"`,
        { kind: 'input' },
      );
    }
    if (status === 404) {
      throw new StrataError(
        'STRATA_SUBSCRIPTION_NOT_FOUND',
        `ARM does not know subscription ${this.#subscriptionId} (${detail}); check the subscription id in the vault credentials`,
        { kind: 'input' },
      );
    }
    throw new StrataError('STRATA_SUBSCRIPTION_ERROR', `ARM answered ${detail} for subscription ${this.#subscriptionId}`, { kind: 'failed' });
  }

  #accept(body: string): SubscriptionStatus {
    let armState: unknown;
    try {
      armState = (JSON.parse(body) as { state?: unknown }).state;
    } catch (err) {
      throw new StrataError('STRATA_SUBSCRIPTION_UNKNOWN', `ARM's answer for subscription ${this.#subscriptionId} is not JSON`, { kind: 'failed', cause: err });
    }
    const state = typeof armState === 'string' ? ARM_STATES[armState.toLowerCase()] : undefined;
    if (!state) {
      throw new StrataError(
        'STRATA_SUBSCRIPTION_UNKNOWN',
        `subscription ${this.#subscriptionId} has a state strata does not know: ${JSON.stringify(armState)} (expected Enabled, Warned, PastDue, Disabled or Deleted)`,
        { kind: 'failed' },
      );
    }
    const status: SubscriptionStatus = { state, source: `arm (${armState as string})`, stale: false, checkedAt: this.#clock.now() };
    this.#cached = status;
    return status;
  }

  #staleOr(err: unknown): SubscriptionStatus {
    const cached = this.#cached;
    if (cached) {
      const at = new Date(cached.checkedAt!).toISOString();
      return { ...cached, stale: true, source: `${cached.source}, last answer at ${at}; ARM unreachable: ${errorMessage(err)}` };
    }
    throw new StrataError('STRATA_SUBSCRIPTION_UNREACHABLE', `cannot reach ARM (${this.#endpoint}) for the subscription state: ${errorMessage(err)}`, {
      kind: 'failed',
      cause: err,
    });
  }

  async #ask(signal: AbortSignal): Promise<HttpAnswer> {
    let token: string;
    try {
      const t = await this.#credential.getToken(`${this.#endpoint}/.default`, { abortSignal: signal });
      if (!t?.token) throw new Error('the credential returned no token');
      token = t.token;
    } catch (err) {
      if (signal.aborted) throw signal.reason ?? err;
      const status = (err as { statusCode?: unknown }).statusCode;
      if (typeof status === 'number' && status >= 400 && status < 500) {
        throw new StrataError('STRATA_SUBSCRIPTION_AUTH', `cannot get a token for ARM (${this.#endpoint}/.default): ${errorMessage(err)}`, {
          kind: 'input',
          cause: err,
        });
      }
      throw new StrataError('STRATA_SUBSCRIPTION_UNREACHABLE', `cannot get a token for ARM: ${errorMessage(err)}`, { kind: 'failed', cause: err });
    }
    const headers = { authorization: `Bearer ${token}`, accept: 'application/json' };
    try {
      if (this.#fetch) {
        const init = { headers, signal, ...(this.#dispatcher !== undefined ? { dispatcher: this.#dispatcher } : {}) } as RequestInit;
        const res = await this.#fetch(this.url, init);
        return { status: res.status, body: await res.text() };
      }
      return await httpGet(new URL(this.url), { headers, signal, proxy: proxyFor(this.url, this.#proxy, this.#env) });
    } catch (err) {
      if (signal.aborted) throw signal.reason ?? err;
      throw new StrataError('STRATA_SUBSCRIPTION_UNREACHABLE', errorMessage(err), { kind: 'failed', cause: err });
    }
  }

  /** Runs `fn` with a signal that aborts after `timeoutMs` on the clock (rejecting with STRATA_SUBSCRIPTION_UNREACHABLE). */
  async #withTimeout<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const timer = new AbortController();
    this.#clock.sleep(this.#timeoutMs, timer.signal).then(
      () => ac.abort(new StrataError('STRATA_SUBSCRIPTION_UNREACHABLE', `no answer from ARM within ${this.#timeoutMs} ms`, { kind: 'failed' })),
      () => {},
    );
    try {
      return await fn(ac.signal);
    } catch (err) {
      if (ac.signal.aborted) throw ac.signal.reason;
      throw err;
    } finally {
      timer.abort();
    }
  }
}

/** `promise`, or the signal's reason as soon as it aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function armErrorCode(body: string): string | undefined {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One GET with node:http/https. Through a proxy, a CONNECT tunnel is opened to the target's host and port
 * (with `Proxy-Authorization` if the proxy needs it), and the request runs inside it, over TLS for https:.
 * Tunnelling plain http: targets too keeps one code path; proxies that allow CONNECT only to port 443 will
 * refuse http: targets on other ports (name such hosts in NO_PROXY).
 */
export async function httpGet(
  url: URL,
  options: { headers: Record<string, string>; signal: AbortSignal; proxy: ResolvedProxy | null },
): Promise<HttpAnswer> {
  const secure = url.protocol === 'https:';
  const port = Number(url.port || (secure ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const base: RequestOptions = {
    method: 'GET',
    host,
    port,
    path: `${url.pathname}${url.search}`,
    headers: { ...options.headers, host: url.host },
    signal: options.signal,
  };
  if (options.proxy) {
    const tunnel = await openTunnel(options.proxy, `${url.hostname}:${port}`, options.signal);
    base.createConnection = () => (secure ? tlsConnect({ socket: tunnel, servername: isIp(host) ? undefined : host, ALPNProtocols: ['http/1.1'] }) : tunnel);
    base.agent = undefined;
  }
  return new Promise<HttpAnswer>((resolve, reject) => {
    const req = (secure ? httpsRequest : httpRequest)(base, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens a CONNECT tunnel through `proxy` to `authority` ("host:port"); resolves with the raw socket. */
export function openTunnel(proxy: ResolvedProxy, authority: string, signal: AbortSignal): Promise<Socket> {
  const secureProxy = proxy.url.protocol === 'https:';
  const headers: Record<string, string> = { host: authority };
  if (proxy.authorization) headers['proxy-authorization'] = proxy.authorization;
  return new Promise<Socket>((resolve, reject) => {
    const req = (secureProxy ? httpsRequest : httpRequest)({
      method: 'CONNECT',
      host: proxy.url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(proxy.url.port || (secureProxy ? 443 : 80)),
      path: authority,
      headers,
      signal,
    });
    req.on('connect', (res: IncomingMessage, socket: Socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new Error(`proxy ${proxy.url.host} refused the tunnel to ${authority}: HTTP ${res.statusCode}`));
        return;
      }
      resolve(socket);
    });
    req.on('error', reject);
    req.end();
  });
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

/**
 * The `since` to record for a new answer: unchanged while the state is the same, else `now` (the first
 * time the new state was seen). The agent persists the result (catalog) so it survives restarts.
 */
export function trackSince(previous: { state: SubscriptionState; since?: number } | null, state: SubscriptionState, now: number): number {
  return previous && previous.state === state && previous.since !== undefined ? previous.since : now;
}

export interface SubscriptionProviderDeps {
  clock: Clock;
  /** The config's `proxy` (for the arm provider's requests). */
  proxy?: ProxyConfig;
  fetch?: typeof fetch;
  dispatcher?: unknown;
  env?: NodeJS.ProcessEnv;
}

/**
 * The provider the config asks for. `static` needs nothing else; `arm` needs the subscription id and an
 * Entra ID credential from the registered vault, and throws StrataError STRATA_SUBSCRIPTION_CONFIG
 * (kind 'usage') when either is missing.
 */
export function createSubscriptionProvider(
  config: StrataConfig['subscription'],
  vault: { subscriptionId?: string; credential?: TokenCredential },
  deps: SubscriptionProviderDeps,
): SubscriptionProvider {
  if (config.provider === 'static') return new StaticSubscriptionProvider(config.state);
  if (!vault.subscriptionId) {
    throw new StrataError(
      'STRATA_SUBSCRIPTION_CONFIG',
      'subscription.provider is "arm" but the vault credentials name no subscription; create them with --subscription ID, or set subscription.provider to "static"',
      { kind: 'usage' },
    );
  }
  if (!vault.credential) {
    throw new StrataError(
      'STRATA_SUBSCRIPTION_CONFIG',
      'subscription.provider is "arm" but the vault credentials give no Entra ID identity to ask ARM with; use --entra credentials, or set subscription.provider to "static"',
      { kind: 'usage' },
    );
  }
  const options: ArmSubscriptionProviderOptions = { subscriptionId: vault.subscriptionId, credential: vault.credential, clock: deps.clock };
  if (config.managementEndpoint !== undefined) options.managementEndpoint = config.managementEndpoint;
  if (config.cacheMinutes !== undefined) options.cacheMs = config.cacheMinutes * 60_000;
  if (deps.proxy !== undefined) options.proxy = deps.proxy;
  if (deps.fetch !== undefined) options.fetch = deps.fetch;
  if (deps.dispatcher !== undefined) options.dispatcher = deps.dispatcher;
  if (deps.env !== undefined) options.env = deps.env;
  return new ArmSubscriptionProvider(options);
}
