// The registered vault: registration (validating the vault credentials against the real endpoint),
// the vault as an object store (with retry and throttle), and the gate every backup and restore
// passes. State lives in the catalog's key/value table.
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { TokenCredential } from '@azure/identity';
import type { Catalog, JobTrigger } from '../catalog/catalog.js';
import type { AzureBlobStore } from '../cloud/azure-store.js';
import { connectivityFrom } from '../cloud/connectivity.js';
import { decide, evaluateAll, GateRefusedError, type GateDecision, type GateState, type Operation } from '../cloud/gate.js';
import { createSubscriptionProvider, trackSince } from '../cloud/subscription.js';
// (The parser is imported where used: fast-xml-parser is ~50 ms of start-up that a disk-only job never needs.)
import type { RedactedVaultCredentials, VaultCredentials } from '../cloud/vault-credentials.js';
import type { SubscriptionState } from '../config/types.js';
import { StrataError } from '../errors.js';
import { listAll, type ObjectStore } from '../store/object-store.js';
import { RetryStore, type RetryInfo } from '../store/retry-store.js';
import { ThrottleStore } from '../store/throttle-store.js';
import { parseBandwidthSchedule } from '../store/bandwidth-schedule.js';
import type { AgentContext } from './context.js';
import { writeSecretFile } from './secret-file.js';

/** The Azure SDK is loaded only when the vault is actually used (a disk-only job never pays for it). */
const azure = () => import('../cloud/azure-store.js');

export const MAX_SERVERS_PER_VAULT = 50;
const REGISTRATION = 'registration';
const LAST_CONTACT = 'lastContact';
const SUBSCRIPTION = 'subscription';

export interface Registration {
  serverId: string;
  vaultId: string;
  vaultName: string;
  registeredAt: number;
  credentialsFile: string;
  vault: RedactedVaultCredentials;
}

export function serverPrefix(serverId: string): string {
  return `servers/${serverId}/`;
}

export function getRegistration(catalog: Catalog): Registration | undefined {
  return catalog.getState<Registration>(REGISTRATION);
}

export function requireRegistration(catalog: Catalog, what: string): Registration {
  const reg = getRegistration(catalog);
  if (!reg) {
    throw new StrataError('STRATA_NOT_REGISTERED', `this server is not registered to a vault, so ${what} is not possible; run 'strata register --vault-credentials FILE' first`, {
      kind: 'usage',
    });
  }
  return reg;
}

/**
 * Validates a vault credentials file (format, expiry, endpoint reachable, credentials accepted, same
 * vault as an existing registration, room for one more server) and records the registration. The
 * file is copied to the state directory (0600). Registration is a successful contact.
 */
export async function register(ctx: AgentContext, file: string, options: { serverId?: string; signal?: AbortSignal } = {}): Promise<Registration & { createdContainer: boolean }> {
  let xml: string;
  try {
    const st = await fs.stat(file);
    if (st.size > 1024 * 1024) throw new StrataError('STRATA_VAULT_CREDENTIALS_MALFORMED', `vault credentials file ${file} is ${st.size} bytes; a real one is a few KiB`);
    xml = await fs.readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof StrataError) throw err;
    throw new StrataError('STRATA_VAULT_CREDENTIALS_MISSING', `cannot read vault credentials file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  const { parseVaultCredentials, redactVaultCredentials } = await import('../cloud/vault-credentials.js');
  const creds = parseVaultCredentials(xml, { now: ctx.clock.now() });
  const catalog = ctx.catalog();
  const existing = getRegistration(catalog);
  if (existing && existing.vaultId !== creds.vaultId) {
    throw new StrataError(
      'STRATA_VAULT_MISMATCH',
      `this server is registered to vault ${existing.vaultName} (${existing.vaultId}), not ${creds.vaultName} (${creds.vaultId}); use credentials of the same vault (a server cannot move vaults)`,
    );
  }
  const probe = await (await import('../cloud/vault-probe.js')).probeVault(creds, { clock: ctx.clock, ...(options.signal ? { signal: options.signal } : {}), ...proxyOption(ctx) });
  const serverId = existing?.serverId ?? options.serverId ?? randomUUID();
  const root = await (await azure()).azureStoreFromVault(creds, { clock: ctx.clock, ...proxyOption(ctx) });
  const servers = new Set((await listAll(root, 'servers/')).map((o) => o.key.split('/')[1]!));
  if (!servers.has(serverId) && servers.size >= MAX_SERVERS_PER_VAULT) {
    throw new StrataError('STRATA_VAULT_FULL', `vault ${creds.vaultName} already has ${servers.size} registered servers (at most ${MAX_SERVERS_PER_VAULT}); use another vault`);
  }
  await root.put(
    `${serverPrefix(serverId)}server.json`,
    Buffer.from(JSON.stringify({ serverId, host: ctx.host, registeredAt: new Date(ctx.clock.now()).toISOString() }, null, 2)),
  );
  const credentialsFile = path.join(ctx.config.stateDir, 'vault-credentials.xml');
  await writeSecretFile(credentialsFile, xml);
  const reg: Registration = {
    serverId,
    vaultId: creds.vaultId,
    vaultName: creds.vaultName,
    registeredAt: existing?.registeredAt ?? ctx.clock.now(),
    credentialsFile,
    vault: redactVaultCredentials(creds),
  };
  catalog.setState(REGISTRATION, reg);
  recordContact(catalog, probe.at);
  ctx.log.info({ serverId, vaultId: creds.vaultId, vault: reg.vault }, 'server registered');
  return { ...reg, createdContainer: probe.createdContainer };
}

function proxyOption(ctx: AgentContext): { proxy?: { host: string; port: number; username?: string; password?: string } } {
  const p = ctx.config.proxy;
  if (!p) return {};
  const url = new URL(typeof p === 'string' ? p : p.url);
  const proxy: { host: string; port: number; username?: string; password?: string } = { host: `${url.protocol}//${url.hostname}`, port: Number(url.port || 80) };
  const username = typeof p === 'string' ? decodeURIComponent(url.username) : p.username;
  const password = typeof p === 'string' ? decodeURIComponent(url.password) : p.password;
  if (username) proxy.username = username;
  if (password) proxy.password = password;
  return { proxy };
}

export async function loadCredentials(ctx: AgentContext, reg: Registration): Promise<VaultCredentials> {
  // Expiry matters at registration; an already registered server keeps working with its copy.
  const { parseVaultCredentials } = await import('../cloud/vault-credentials.js');
  return parseVaultCredentials(await fs.readFile(reg.credentialsFile, 'utf8'), { now: 0 });
}

/** The vault (one server's prefix of it) as an object store with retries and the bandwidth schedule. */
export async function vaultStore(
  ctx: AgentContext,
  options: { serverId?: string; onRetry?: (info: RetryInfo) => void } = {},
): Promise<{ store: ObjectStore; raw: AzureBlobStore; retry: RetryStore; registration: Registration; creds: VaultCredentials }> {
  const registration = requireRegistration(ctx.catalog(), 'cloud work');
  const creds = await loadCredentials(ctx, registration);
  const raw = await (await azure()).azureStoreFromVault(creds, { prefix: serverPrefix(options.serverId ?? registration.serverId), clock: ctx.clock, ...proxyOption(ctx) });
  let inner: ObjectStore = raw;
  const throttle = ctx.config.throttle;
  if (throttle && (throttle.workMbps || throttle.otherMbps)) {
    const schedule = parseBandwidthSchedule(throttle, ctx.config.timezone ? { timeZone: ctx.config.timezone } : {});
    inner = new ThrottleStore(inner, { upload: schedule, download: schedule, clock: ctx.clock });
  }
  const retry = new RetryStore(inner, {
    clock: ctx.clock,
    maxAttempts: Number(process.env['STRATA_RETRY_ATTEMPTS'] ?? 6),
    baseDelayMs: Number(process.env['STRATA_RETRY_BASE_MS'] ?? 500),
    onRetry: (info) => {
      ctx.log.warn({ operation: info.op, object: info.key, attempt: info.attempt, error: String((info.error as Error)?.message ?? info.error) }, 'vault request retried');
      options.onRetry?.(info);
    },
  });
  return { store: retry, raw, retry, registration, creds };
}

// --- connectivity and subscription state ---

export function recordContact(catalog: Catalog, at: number): void {
  const prev = catalog.getState<number>(LAST_CONTACT);
  if (prev === undefined || at > prev) catalog.setState(LAST_CONTACT, at);
}

export function lastContact(catalog: Catalog): number | null {
  return catalog.getState<number>(LAST_CONTACT) ?? null;
}

/** Probes the vault (bounded); records the contact on success. Returns whether it answered. */
export async function probeRegisteredVault(ctx: AgentContext, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ ok: boolean; error?: string }> {
  const catalog = ctx.catalog();
  const reg = getRegistration(catalog);
  if (!reg) return { ok: false, error: 'not registered' };
  try {
    const creds = await loadCredentials(ctx, reg);
    const r = await (await import('../cloud/vault-probe.js')).probeVault(creds, { clock: ctx.clock, timeoutMs: options.timeoutMs ?? 10_000, ...(options.signal ? { signal: options.signal } : {}), ...proxyOption(ctx) });
    recordContact(catalog, r.at);
    return { ok: true };
  } catch (err) {
    ctx.log.warn({ err: (err as Error).message }, 'vault probe failed');
    return { ok: false, error: (err as Error).message };
  }
}

async function subscriptionCredential(ctx: AgentContext, creds: VaultCredentials): Promise<TokenCredential | undefined> {
  if (creds.auth.type !== 'Entra') return undefined;
  const auth = await (await azure()).azureAuthFromVault(creds);
  return auth.type === 'Token' ? auth.credential : undefined;
}

export interface GateStatus extends GateState {
  registered: boolean;
  serverId: string | null;
  vault: RedactedVaultCredentials | null;
  subscriptionSource: string;
  decisions: Record<Operation, GateDecision>;
}

/** The gate's inputs now: last contact (probing first when `probe` is set), subscription state (tracked since when). */
export async function gateStatus(ctx: AgentContext, options: { probe?: boolean; signal?: AbortSignal } = {}): Promise<GateStatus> {
  const catalog = ctx.catalog();
  const reg = getRegistration(catalog);
  if (reg && options.probe) await probeRegisteredVault(ctx, options.signal ? { signal: options.signal } : {});
  const now = ctx.clock.now();
  const contact = lastContact(catalog);
  let subscription: SubscriptionState;
  let source: string;
  try {
    // Only ARM needs the vault's identity (a static state is the config's own; the parser costs start-up).
    const creds = reg && ctx.config.subscription.provider === 'arm' ? await loadCredentials(ctx, reg) : null;
    const credential = creds ? await subscriptionCredential(ctx, creds) : undefined;
    const provider = createSubscriptionProvider(
      ctx.config.subscription,
      { ...(creds?.subscriptionId ? { subscriptionId: creds.subscriptionId } : {}), ...(credential ? { credential } : {}) },
      { clock: ctx.clock, ...(ctx.config.proxy !== undefined ? { proxy: ctx.config.proxy } : {}) },
    );
    const status = await provider.current(options.signal ? { signal: options.signal } : {});
    subscription = status.state;
    source = status.source + (status.stale ? ' (stale)' : '');
  } catch (err) {
    // No answer and nothing cached: keep the last known state, or refuse to guess.
    const prev = catalog.getState<{ state: SubscriptionState; since?: number }>(SUBSCRIPTION);
    if (!prev) throw err;
    subscription = prev.state;
    source = `last known (${(err as Error).message})`;
  }
  const prev = catalog.getState<{ state: SubscriptionState; since?: number }>(SUBSCRIPTION) ?? null;
  const since = trackSince(prev, subscription, now);
  if (!prev || prev.state !== subscription) {
    catalog.setState(SUBSCRIPTION, { state: subscription, since });
    ctx.log.info({ from: prev?.state ?? null, to: subscription }, 'subscription state changed');
  }
  const state: GateState = { connectivity: connectivityFrom(contact, now), subscription, lastContact: contact, subscriptionSince: since };
  if (subscription === 'deprovisioned') markCloudPointsDeleted(catalog);
  return {
    ...state,
    registered: Boolean(reg),
    serverId: reg?.serverId ?? null,
    vault: reg?.vault ?? null,
    subscriptionSource: source,
    decisions: evaluateAll(state),
  };
}

/** On deprovisioning, the vault's recovery points are gone: the catalog says so. */
export function markCloudPointsDeleted(catalog: Catalog): number {
  let n = 0;
  for (const rp of catalog.recoveryPoints()) {
    if (rp.cloudState !== 'none' && rp.cloudState !== 'deleted') {
      catalog.setRecoveryPointState(rp.id, { cloud: 'deleted' });
      n++;
    }
  }
  return n;
}

/**
 * Throws unless `op` may run now. Backups need a registered server. When the stored contact says
 * connectivity is lost, one bounded probe is made before refusing (the vault may be back).
 */
export async function ensureAllowed(ctx: AgentContext, op: Operation, options: { signal?: AbortSignal } = {}): Promise<GateDecision> {
  const catalog = ctx.catalog();
  const reg = getRegistration(catalog);
  if (!reg) {
    if (op === 'restore-disk') return { operation: op, allowed: true, rule: 'connected-active', message: 'restore from disk allowed (server not registered)', lifts: '', cloudPointsDeleted: false };
    requireRegistration(catalog, op.startsWith('backup') ? 'a backup (even to disk)' : 'a restore from the cloud');
  }
  // A restore from the cloud talks to the vault anyway: probe first, so the gate is asked once. Any other
  // operation probes only when the stored contact says connectivity is lost (the vault may be back).
  let status = await gateStatus(ctx, { ...options, probe: op === 'restore-cloud' });
  if (status.connectivity === 'lost' && op !== 'restore-cloud') status = await gateStatus(ctx, { ...options, probe: true });
  const decision = decide(status, op);
  if (!decision.allowed) {
    ctx.log.warn({ op, rule: decision.rule, message: decision.message }, 'refused by the gate');
    throw new GateRefusedError(decision);
  }
  return decision;
}

/**
 * The gate for a job: like `ensureAllowed`, and a refusal is recorded in the job history as a skipped
 * job (not a failed one) naming the rule, before it is thrown.
 */
export async function gateJob(ctx: AgentContext, op: Operation, job: { kind: string; group: string | null; trigger?: JobTrigger; signal?: AbortSignal }): Promise<GateDecision> {
  try {
    return await ensureAllowed(ctx, op, job.signal ? { signal: job.signal } : {});
  } catch (err) {
    if (err instanceof GateRefusedError) ctx.catalog().recordSkippedJob(job.kind, job.group, ctx.clock.now(), err.message, job.trigger ?? 'ad hoc');
    throw err;
  }
}
