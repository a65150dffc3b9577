// Connectivity to Azure: derived from the time of the last successful contact, kept fresh by a probing monitor.
// Also the one place that decides which proxy, if any, a request to Azure goes through.
import type { Clock } from '../clock.js';
import type { ProxyConfig } from '../config/types.js';
import { throwIfAborted } from '../errors.js';
import type { Connectivity } from './gate.js';

export type { Connectivity } from './gate.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/** Connectivity is lost when the last successful contact is more than this old (15 days, DESIGN.md "Gating"). */
export const LOST_AFTER_MS = 15 * DAY_MS;

/**
 * Connectivity at `now`, from the time of the last successful contact.
 *
 * - `lost` when `now - lastContactMs` is more than LOST_AFTER_MS (exactly 15 days is still connected).
 * - `lost` when `lastContactMs` is null: a server that has never reached Azure has no evidence of connectivity.
 *   Registration is itself a successful contact (it reaches the vault), so `strata register` must record
 *   its time with `setLastContact`; a freshly registered server is therefore connected.
 * - A contact time in the future (clock moved backwards) counts as a contact now: connected.
 */
export function connectivityFrom(lastContactMs: number | null, now: number): Connectivity {
  if (lastContactMs === null || !Number.isFinite(lastContactMs)) return 'lost';
  return now - lastContactMs > LOST_AFTER_MS ? 'lost' : 'connected';
}

/** Where the time of the last successful contact is persisted (the catalog implements it). */
export interface ContactStore {
  getLastContact(): number | null;
  /** Called with the completion time of each successful probe; never with a time earlier than the stored one. */
  setLastContact(ms: number): void;
}

export type ProbeOutcome = { ok: true; at: number } | { ok: false; error: unknown };

export interface ConnectivityMonitorOptions {
  clock: Clock;
  /**
   * One round trip to Azure (for instance, reading the vault container's properties). Resolves on success,
   * rejects on any failure. Called at most once at a time.
   */
  probe: (options: { signal?: AbortSignal }) => Promise<void>;
  store: ContactStore;
  /** How often `start()` probes. Default: 1 hour. */
  intervalMs?: number;
  /** `ensure()` does not probe again when the last contact is younger than this. Default: 5 minutes. */
  freshMs?: number;
  /** Called with each failed probe's error (for the log). Default: none. */
  onProbeError?: (error: unknown) => void;
}

/**
 * Keeps the last-contact time current: probes every `intervalMs` once started, and before cloud work
 * through `ensure()`. Each successful probe stores its completion time; a failed probe changes nothing
 * (connectivity is lost only when no probe has succeeded for 15 days).
 */
export class ConnectivityMonitor {
  #clock: Clock;
  #probe: ConnectivityMonitorOptions['probe'];
  #store: ContactStore;
  #intervalMs: number;
  #freshMs: number;
  #onProbeError: (error: unknown) => void;
  #inFlight: Promise<ProbeOutcome> | null = null;
  #stopTimer: (() => void) | null = null;
  #lastError: unknown = undefined;

  constructor(options: ConnectivityMonitorOptions) {
    this.#clock = options.clock;
    this.#probe = options.probe;
    this.#store = options.store;
    this.#intervalMs = options.intervalMs ?? 60 * 60 * 1000;
    this.#freshMs = options.freshMs ?? 5 * 60 * 1000;
    this.#onProbeError = options.onProbeError ?? (() => {});
  }

  lastContact(): number | null {
    return this.#store.getLastContact();
  }

  /** Connectivity now, from the stored last contact; does not probe. */
  connectivity(): Connectivity {
    return connectivityFrom(this.#store.getLastContact(), this.#clock.now());
  }

  /** The error of the most recent failed probe, cleared by a successful one. */
  lastError(): unknown {
    return this.#lastError;
  }

  /**
   * Probes once. Concurrent calls share the probe in flight. A probe failure is returned, not thrown;
   * an abort of `signal` is thrown (cancellation is never reported as a failed probe).
   */
  async probe(options: { signal?: AbortSignal } = {}): Promise<ProbeOutcome> {
    throwIfAborted(options.signal);
    this.#inFlight ??= this.#runProbe(options.signal).finally(() => {
      this.#inFlight = null;
    });
    const result = await this.#inFlight;
    throwIfAborted(options.signal);
    return result;
  }

  /**
   * Called before cloud work: probes unless the last contact is younger than `freshMs`, then returns
   * connectivity. A failed probe does not make connectivity lost by itself.
   */
  async ensure(options: { signal?: AbortSignal } = {}): Promise<Connectivity> {
    const last = this.#store.getLastContact();
    if (last === null || this.#clock.now() - last >= this.#freshMs) await this.probe(options);
    return this.connectivity();
  }

  /** Starts periodic probing (the first probe after `intervalMs`). Idempotent. */
  start(): void {
    if (this.#stopTimer) return;
    this.#stopTimer = this.#clock.every(this.#intervalMs, () => {
      void this.probe().catch((err: unknown) => this.#onProbeError(err));
    });
  }

  /** Stops periodic probing; a probe in flight completes. Idempotent. */
  stop(): void {
    this.#stopTimer?.();
    this.#stopTimer = null;
  }

  async #runProbe(signal: AbortSignal | undefined): Promise<ProbeOutcome> {
    try {
      await this.#probe(signal ? { signal } : {});
    } catch (error) {
      if (signal?.aborted) throw signal.reason ?? error;
      this.#lastError = error;
      this.#onProbeError(error);
      return { ok: false, error };
    }
    const at = this.#clock.now();
    const previous = this.#store.getLastContact();
    if (previous === null || at > previous) this.#store.setLastContact(at);
    this.#lastError = undefined;
    return { ok: true, at };
  }
}

/** A proxy to send a request through. */
export interface ResolvedProxy {
  /** http: or https: URL of the proxy, without credentials. */
  url: URL;
  /** The `Proxy-Authorization` header value, when the proxy needs credentials. */
  authorization?: string;
}

/**
 * The proxy for a request to `target`, from the config's `proxy` and the environment:
 *
 * - `proxy` absent (undefined): the environment decides: HTTPS_PROXY (or https_proxy) for https: targets,
 *   HTTP_PROXY (or http_proxy) for http: targets, unless NO_PROXY (or no_proxy) lists the target.
 * - `proxy: null`: no proxy, whatever the environment says.
 * - `proxy: "http://host:port"` or `{ url, username?, password?, noProxy? }`: that proxy for every target
 *   except those the object's `noProxy` lists (the environment's NO_PROXY is not consulted).
 *
 * A NO_PROXY list is comma- or space-separated; an entry is `*` (everything), a host name (matches it and
 * its subdomains; a leading `.` or `*.` is ignored), or an IP address, each optionally with `:port`.
 * Credentials may be given in the URL (`http://user:pass@host:3128`) or in the object form.
 */
export function proxyFor(target: string | URL, proxy: ProxyConfig | undefined, env: NodeJS.ProcessEnv = process.env): ResolvedProxy | null {
  const url = typeof target === 'string' ? new URL(target) : target;
  if (proxy === null) return null;
  if (proxy === undefined) {
    const fromEnv =
      url.protocol === 'https:' ? (env['HTTPS_PROXY'] ?? env['https_proxy']) : (env['HTTP_PROXY'] ?? env['http_proxy']);
    if (!fromEnv) return null;
    if (bypassesProxy(url, env['NO_PROXY'] ?? env['no_proxy'] ?? '')) return null;
    return resolve(fromEnv, undefined, undefined);
  }
  if (typeof proxy === 'string') return resolve(proxy, undefined, undefined);
  if (bypassesProxy(url, (proxy.noProxy ?? []).join(','))) return null;
  return resolve(proxy.url, proxy.username, proxy.password);
}

/** True when `target` matches an entry of a NO_PROXY list (see proxyFor). */
export function bypassesProxy(target: URL, noProxy: string): boolean {
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  for (const raw of noProxy.split(/[\s,]+/)) {
    const { host: entryHost, port: entryPort } = splitHostPort(raw.trim().toLowerCase());
    if (!entryHost) continue;
    if (entryHost === '*') return true;
    const entry = entryHost.replace(/^\*?\./, '');
    if (entryPort !== undefined && entryPort !== port) continue;
    if (host === entry || host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/** "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address (two or more colons: no port). */
function splitHostPort(entry: string): { host: string; port: string | undefined } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] };
  const colons = entry.split(':').length - 1;
  if (colons === 1) {
    const [host, port] = entry.split(':') as [string, string];
    return { host, port: port || undefined };
  }
  return { host: entry, port: undefined };
}

function resolve(proxyUrl: string, username: string | undefined, password: string | undefined): ResolvedProxy {
  const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(proxyUrl) ? proxyUrl : `http://${proxyUrl}`);
  const user = username ?? decodeURIComponent(url.username);
  const pass = password ?? decodeURIComponent(url.password);
  url.username = '';
  url.password = '';
  const resolved: ResolvedProxy = { url };
  if (user) resolved.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  return resolved;
}
