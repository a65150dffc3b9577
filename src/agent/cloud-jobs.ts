// Jobs on the vault copy: restore from the cloud (also on an alternate server), catalog rebuild from
// the cloud, check of the vault, repair of each copy from the other, and soft deletes.
import { crashPoint } from '../crash.js';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { BlobLocation, Catalog, RecoveryPointRow } from '../catalog/catalog.js';
import { readPassphraseFile } from '../crypto/passphrase.js';
import { StrataError, isNotFound } from '../errors.js';
import { decodeBlob } from '../replica/blob-codec.js';
import { BlobReader } from '../replica/blob-reader.js';
import { syncCatalog } from '../replica/catalog-sync.js';
import { checkPool, type CheckReport } from '../replica/check.js';
import { withLock } from '../replica/lock.js';
import type { IndexedPack } from '../replica/index-segment.js';
import type { Manifest } from '../replica/manifest.js';
import { readPackHeader, type Compression } from '../replica/pack.js';
import { INDEX_PREFIX, KEYS_PREFIX, PACKS_PREFIX, SNAPSHOTS_PREFIX, packKey, Pool } from '../replica/pool.js';
import { addCatalogKnownMissing } from './jobs.js';
import { restoreTree, type ConflictPolicy, type RestoreProgress, type RestoreResult } from '../replica/restore.js';
import { listAll, type ObjectStore } from '../store/object-store.js';
import { RecoveryFolderStore } from '../store/recovery-folder-store.js';
import type { AgentContext } from './context.js';
import { ensureAllowed, gateJob, getRegistration, loadCredentials, recordContact, requireRegistration, vaultStore } from './vault.js';
import { syncDescriptionAndKeys } from './replication.js';

/** Days a blob removed from the vault stays recoverable (marked, not deleted). */
export const SOFT_DELETE_DAYS = 14;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface VaultSession {
  pool: Pool;
  store: ObjectStore;
  serverId: string;
}

/** Opens the vault copy of a server's pool (this server's by default) with a passphrase. */
export async function openVaultPool(ctx: AgentContext, options: { serverId?: string; passphraseFile?: string } = {}): Promise<VaultSession> {
  const reg = requireRegistration(ctx.catalog(), 'reading the vault');
  const serverId = options.serverId ?? reg.serverId;
  const { store } = await vaultStore(ctx, { serverId });
  const passphrase = options.passphraseFile ? readPassphraseFile(options.passphraseFile).passphrase : ctx.passphrase();
  try {
    let pool: Pool;
    try {
      pool = await Pool.open(store, passphrase);
    } catch (err) {
      // A passphrase change whose new key slot did not reach the vault (offline, or a crash): this
      // server's own pool opens with the passphrase, so its (sealed) key slots are uploaded, then retried.
      if ((err as StrataError).code !== 'STRATA_PASSPHRASE_WRONG' || serverId !== reg.serverId || options.passphraseFile) throw err;
      const local = await ctx.pool().catch(() => null);
      if (!local) throw err;
      await syncDescriptionAndKeys(local, store, undefined, { compareContent: true, keepRemote: true });
      ctx.log.warn('the vault lacked the current key slot; uploaded it from the local pool');
      pool = await Pool.open(store, passphrase);
    }
    recordContact(ctx.catalog(), ctx.clock.now());
    return { pool, store, serverId };
  } catch (err) {
    if ((err as StrataError).code === 'STRATA_POOL_MISSING') {
      const others = await vaultServers(ctx);
      throw new StrataError(
        'STRATA_VAULT_EMPTY',
        `the vault holds no recovery points for server ${serverId}${others.length ? `; servers with data in this vault: ${others.join(', ')} (use --server ID)` : ''}`,
        { kind: 'usage', cause: err },
      );
    }
    throw err;
  }
}

/** Server ids that have a pool in the vault. */
export async function vaultServers(ctx: AgentContext): Promise<string[]> {
  const reg = requireRegistration(ctx.catalog(), 'reading the vault');
  const root = await (await import('../cloud/azure-store.js')).azureStoreFromVault(await loadCredentials(ctx, reg), { clock: ctx.clock });
  const ids = new Set<string>();
  for await (const o of root.list('servers/')) {
    const parts = o.key.split('/');
    if (parts[2] === 'strata.json') ids.add(parts[1]!);
  }
  return [...ids].sort();
}

/** The blob index of a pool copy read from its own index segments (superseded ones skipped). */
export async function loadIndex(pool: Pool): Promise<Map<string, BlobLocation>> {
  const map = new Map<string, BlobLocation>();
  const segs = [];
  const superseded = new Set<string>();
  for (const id of await pool.listIndexIds()) {
    const seg = await pool.readIndex(id);
    segs.push({ id, seg });
    for (const s of seg.supersedes) superseded.add(s.toString('hex'));
  }
  for (const { id, seg } of segs) {
    if (superseded.has(id)) continue;
    for (const p of seg.packs) {
      const packId = p.id.toString('hex');
      for (const e of p.entries) map.set(e.id.toString('hex'), { id: e.id, type: e.type, packId, offset: e.offset, length: e.length, rawLength: e.rawLength, compression: e.compression });
    }
  }
  return map;
}

/** Finds a manifest in a pool copy by id, unique prefix, or "latest" (of a group). */
export async function findManifest(pool: Pool, ref: string, group?: string): Promise<{ id: string; manifest: Manifest }> {
  const ids = await pool.listManifestIds();
  if (ref === 'latest') {
    let best: { id: string; manifest: Manifest } | null = null;
    for (const id of ids) {
      const m = await pool.readManifest(id);
      if (group !== undefined && m.group !== group) continue;
      if (!best || m.time > best.manifest.time) best = { id, manifest: m };
    }
    if (!best) throw new StrataError('STRATA_RP_NOT_FOUND', 'no recovery point in the vault' + (group ? ` for group ${group}` : ''), { kind: 'usage' });
    return best;
  }
  const matches = ids.filter((id) => id.startsWith(ref));
  if (matches.length === 0) throw new StrataError('STRATA_RP_NOT_FOUND', `no recovery point ${ref} in the vault; list them with 'strata recovery-points'`, { kind: 'usage' });
  if (matches.length > 1) throw new StrataError('STRATA_RP_AMBIGUOUS', `recovery point prefix ${ref} matches ${matches.length} points; give more digits`, { kind: 'usage' });
  return { id: matches[0]!, manifest: await pool.readManifest(matches[0]!) };
}

export async function listVaultRecoveryPoints(ctx: AgentContext, options: { serverId?: string; passphraseFile?: string; group?: string }) {
  await ensureAllowed(ctx, 'restore-cloud');
  const session = await openVaultPool(ctx, options);
  const { raw } = await vaultStore(ctx, { serverId: session.serverId });
  const out = [];
  for (const id of await session.pool.listManifestIds()) {
    const meta = await raw.getMetadata(`${SNAPSHOTS_PREFIX}${id}`).catch(() => ({}) as Record<string, string>);
    if (meta['strata_deleted_at']) continue; // soft-deleted: kept 14 days for safety, no longer a recovery point
    const m = await session.pool.readManifest(id);
    if (options.group !== undefined && m.group !== options.group) continue;
    out.push({ id, group: m.group, source: m.source, sourceType: m.sourceType, host: m.host, time: Date.parse(m.time), stats: m.stats, diskState: 'absent', cloudState: 'uploaded', serverId: session.serverId });
  }
  return out.sort((a, b) => a.time - b.time || a.id.localeCompare(b.id));
}

export interface CloudRestoreOptions {
  recoveryPoint: string;
  group?: string;
  serverId?: string;
  passphraseFile?: string;
  item?: string;
  target: string;
  onConflict: ConflictPolicy;
  signal?: AbortSignal;
  onProgress?: (p: RestoreProgress) => void;
}

/**
 * Restores from the vault: only the packs (byte ranges) the restore needs are fetched, through a
 * recovery folder in the scratch area that is removed afterwards. Works on a fresh machine with the
 * vault credentials and the passphrase.
 */
export async function restoreFromCloud(ctx: AgentContext, options: CloudRestoreOptions): Promise<RestoreResult & { recoveryPoint: string; bytesFetched: number; jobId: number }> {
  await gateJob(ctx, 'restore-cloud', { kind: 'restore --from cloud', group: options.group ?? null, ...(options.signal ? { signal: options.signal } : {}) });
  const catalog = ctx.catalog();
  // The catalog (rebuilt from the cloud on an alternate server) knows which server a point belongs to.
  let known: RecoveryPointRow | undefined;
  if (!options.serverId) {
    try {
      known = catalog.findRecoveryPoint(options.recoveryPoint, options.group);
    } catch {
      known = undefined;
    }
  }
  if (known && known.cloudState === 'deleted') {
    throw new StrataError('STRATA_RP_CLOUD_DELETED', `recovery point ${known.id.slice(0, 12)} was deleted from the vault (the subscription was deprovisioned)`, { kind: 'gate' });
  }
  const session = await openVaultPool(ctx, {
    ...(options.serverId ?? known?.serverId ? { serverId: (options.serverId ?? known?.serverId)! } : {}),
    ...(options.passphraseFile ? { passphraseFile: options.passphraseFile } : {}),
  });
  const { id, manifest } = await findManifest(session.pool, known?.id ?? options.recoveryPoint, options.group);
  const index = await loadIndex(session.pool);
  const folder = path.join(ctx.config.scratch, `recovery-${randomBytes(6).toString('hex')}`);
  const through = new RecoveryFolderStore(session.store, folder);
  const jobId = catalog.createJob('restore --from cloud', manifest.group || null, ctx.clock.now());
  try {
    const reader = new BlobReader(through, session.pool.keys, (bid) => index.get(bid.toString('hex')));
    const result = await restoreTree(reader, manifest.tree, {
      target: path.resolve(options.target),
      onConflict: options.onConflict,
      ...(options.item !== undefined ? { item: options.item } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    catalog.finishJob(jobId, result.warnings.length ? 'warnings' : 'completed', ctx.clock.now(), { recoveryPoint: id, from: 'cloud', bytesFetched: through.bytesFetched, files: result.files });
    recordContact(catalog, ctx.clock.now());
    return { ...result, recoveryPoint: id, bytesFetched: through.bytesFetched, jobId };
  } catch (err) {
    catalog.finishJob(jobId, 'failed', ctx.clock.now(), null, (err as Error).message);
    throw err;
  } finally {
    await fs.rm(folder, { recursive: true, force: true });
  }
}

/** Re-creates the catalog from the vault copy (this server's, or --server's). */
export async function rebuildCatalogFromCloud(ctx: AgentContext, options: { serverId?: string; passphraseFile?: string } = {}) {
  await ensureAllowed(ctx, 'restore-cloud');
  const session = await openVaultPool(ctx, options);
  const catalog = ctx.catalog();
  catalog.clearPoolCache();
  const result = await syncCatalog(session.pool, catalog, { copy: 'cloud', serverId: session.serverId });
  // If the local pool is the same pool, bring its state in too.
  try {
    const local = await ctx.pool();
    if (local.description.id === session.pool.description.id) await syncCatalog(local, catalog);
  } catch {
    /* no local pool (an alternate server) */
  }
  return { ...result, serverId: session.serverId, recoveryPoints: catalog.recoveryPoints().length, packs: catalog.packs().length };
}

export interface CloudCheckReport extends CheckReport {
  /** Packs the catalog says are in the vault but are not (or have the wrong size). */
  catalogMismatches: { pack: string; problem: string }[];
}

/** Checks the vault copy: structure (and with readData, every blob), and that what the catalog says is there, is. */
export async function checkCloud(ctx: AgentContext, options: { readData?: boolean; signal?: AbortSignal } = {}): Promise<CloudCheckReport> {
  let session: VaultSession;
  try {
    session = await openVaultPool(ctx);
  } catch (err) {
    if ((err as StrataError).code !== 'STRATA_VAULT_EMPTY') throw err;
    // Nothing uploaded yet is a sound (empty) vault, unless the catalog says something arrived.
    const expected = ctx.catalog().packs().filter((p) => p.cloudState === 'uploaded' || p.cloudState === 'indexed');
    const empty: CloudCheckReport = { ok: expected.length === 0, recoveryPoints: 0, packs: 0, blobs: 0, bytesRead: 0, problems: [], unreferencedPacks: [], catalogMismatches: [] };
    for (const p of expected) empty.catalogMismatches.push({ pack: p.id, problem: 'missing in the vault (the vault holds no pool for this server)' });
    return empty;
  }
  const report = await checkPool(session.pool, { readData: options.readData ?? false, ...(options.signal ? { signal: options.signal } : {}) });
  const sizes = new Map((await listAll(session.store, PACKS_PREFIX)).map((o) => [o.key.split('/').pop()!, o.size]));
  const catalogMismatches: { pack: string; problem: string }[] = [];
  for (const p of ctx.catalog().packs()) {
    if (p.cloudState !== 'uploaded' && p.cloudState !== 'indexed') continue;
    const size = sizes.get(p.id);
    if (size === undefined) catalogMismatches.push({ pack: p.id, problem: 'missing in the vault' });
    else if (size !== p.size) catalogMismatches.push({ pack: p.id, problem: `${size} bytes in the vault, ${p.size} expected` });
  }
  recordContact(ctx.catalog(), ctx.clock.now());
  return { ...report, ok: report.ok && catalogMismatches.length === 0, catalogMismatches };
}

/** Verifies a whole pack (header and every blob) with the pool's keys; returns what is wrong or null. */
function verifyPackBytes(pool: Pool, packId: string, data: Buffer): string | null {
  try {
    const entries = readPackHeader(pool.keys.encKey, Buffer.from(packId, 'hex'), data, `pack ${packId.slice(0, 12)}`);
    for (const e of entries) decodeBlob(pool.keys, { id: e.id, compression: e.compression as Compression, rawLength: e.rawLength }, data.subarray(e.offset, e.offset + e.length), { verifyId: true });
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

export interface RepairReport {
  /** strata.json or key slots brought back from the vault. */
  descriptionRestored: string[];
  localRepaired: string[];
  localUnrepairable: { object: string; problem: string }[];
  vaultRepaired: string[];
  vaultUnrepairable: { object: string; problem: string }[];
  checkAfter: { ok: boolean; problems: number; vaultOk: boolean; vaultProblems: number };
}

/**
 * Heals each copy from the other. Reads both copies whole (check --read-data on disk and in the vault),
 * then: a pack, manifest, strata.json or key slot lost or damaged on disk comes back from the vault
 * (verified with the keys before it replaces anything); a damaged or lost local index segment is
 * rewritten from the catalog (or from the pack headers); anything lost or damaged in the vault is
 * uploaded again from a verified local copy. Takes the exclusive pool lock.
 */
export async function repair(ctx: AgentContext, options: { signal?: AbortSignal } = {}): Promise<RepairReport> {
  const catalog = ctx.catalog();
  const session = await openVaultPool(ctx);
  const vault = session.store;
  const opts = options.signal ? { signal: options.signal } : {};
  const report: RepairReport = { descriptionRestored: [], localRepaired: [], localUnrepairable: [], vaultRepaired: [], vaultUnrepairable: [], checkAfter: { ok: false, problems: 0, vaultOk: false, vaultProblems: 0 } };

  // A. The local description and key slots: the vault's opened with the passphrase, so they are sound.
  const local = ctx.poolStore;
  let pool: Pool;
  try {
    pool = await Pool.open(local, ctx.passphrase());
  } catch (err) {
    const code = (err as StrataError).code;
    if (code !== 'STRATA_POOL_CORRUPT' && code !== 'STRATA_POOL_MISSING' && code !== 'STRATA_PASSPHRASE_WRONG') throw err;
    for (const key of ['strata.json', ...(await listAll(vault, KEYS_PREFIX, opts)).map((o) => o.key)]) {
      const theirs = await vault.get(key, opts);
      const mine = await local.get(key).catch(() => null);
      if (mine && mine.equals(theirs)) continue;
      await local.put(key, theirs, opts);
      report.descriptionRestored.push(key);
    }
    pool = await Pool.open(local, ctx.passphrase());
  }
  ctx.setPool(pool);

  await withLock(pool.store, { exclusive: true, operation: 'repair', clock: ctx.clock, host: ctx.host }, async () => {
    // B. Local copy.
    const localReport = await checkPool(pool, { readData: true, ...opts });
    addCatalogKnownMissing(localReport, catalog, new Set(await pool.listManifestIds()), new Set(await pool.listIndexIds()));
    const indexProblems: string[] = [];
    for (const p of localReport.problems) {
      if (p.kind === 'pack') {
        const fixed = await fetchVerified(vault, packKey(p.object), (data) => verifyPackBytes(pool, p.object, data), opts);
        if (typeof fixed === 'string') report.localUnrepairable.push({ object: `pack ${p.object}`, problem: `${p.problem}; ${fixed}` });
        else {
          await local.put(packKey(p.object), fixed, opts);
          catalog.setPackLocalState(p.object, 'present');
          report.localRepaired.push(`pack ${p.object}`);
        }
      } else if (p.kind === 'manifest') {
        const id = p.object.slice(SNAPSHOTS_PREFIX.length);
        const fixed = await fetchVerified(vault, p.object, (data) => verifyWith(() => pool.decodeManifest(id, data)), opts);
        if (typeof fixed === 'string') report.localUnrepairable.push({ object: p.object, problem: `${p.problem}; ${fixed}` });
        else {
          await local.put(p.object, fixed, opts);
          report.localRepaired.push(p.object);
        }
      } else if (p.kind === 'index') {
        indexProblems.push(p.object.slice(INDEX_PREFIX.length));
      }
    }
    if (indexProblems.length > 0 || localReport.problems.some((p) => p.kind === 'tree' || p.kind === 'blob')) {
      const rewritten = await rewriteLocalIndex(ctx, pool, catalog, indexProblems, opts);
      report.localRepaired.push(...rewritten);
    }

    // C. Vault copy.
    const vaultReport = await checkPool(session.pool, { readData: true, ...opts });
    const vaultIndexDamaged = vaultReport.problems.filter((p) => p.kind === 'index').map((p) => p.object);
    const toUpload = new Set<string>();
    for (const p of vaultReport.problems) {
      if (p.kind === 'pack') toUpload.add(packKey(p.object));
      if (p.kind === 'manifest') toUpload.add(p.object);
    }
    const inVault = new Map((await listAll(vault, PACKS_PREFIX, opts)).map((o) => [o.key.split('/').pop()!, o.size]));
    for (const p of catalog.packs()) {
      if ((p.cloudState === 'uploaded' || p.cloudState === 'indexed') && inVault.get(p.id) !== p.size) toUpload.add(packKey(p.id));
    }
    const vaultManifests = new Set((await listAll(vault, SNAPSHOTS_PREFIX, opts)).map((o) => o.key));
    for (const rp of catalog.recoveryPoints()) {
      if (rp.cloudState === 'uploaded' && rp.diskState === 'present' && !vaultManifests.has(`${SNAPSHOTS_PREFIX}${rp.id}`)) toUpload.add(`${SNAPSHOTS_PREFIX}${rp.id}`);
    }
    for (const key of toUpload) {
      const data = await local.get(key).catch(() => null);
      const problem = !data
        ? 'not on disk either'
        : key.startsWith(PACKS_PREFIX)
          ? verifyPackBytes(pool, key.split('/').pop()!, data)
          : verifyWith(() => pool.decodeManifest(key.slice(SNAPSHOTS_PREFIX.length), data));
      if (problem || !data) {
        report.vaultUnrepairable.push({ object: key, problem: problem ?? 'not on disk either' });
        continue;
      }
      await vault.put(key, data, opts);
      report.vaultRepaired.push(key);
    }
    if (vaultIndexDamaged.length > 0) {
      // One new vault index segment for every pack the catalog has there, superseding all the old ones.
      const old = (await listAll(vault, INDEX_PREFIX, opts)).map((o) => o.key.slice(INDEX_PREFIX.length));
      const live = catalog.packs().filter((p) => p.cloudState === 'indexed' || p.cloudState === 'uploaded');
      await pool.writeIndex({ supersedes: old.map((id) => Buffer.from(id, 'hex')), packs: live.map((p) => indexedFromCatalog(catalog, p.id, p.size)) }, { store: vault, ...opts });
      for (const id of old) await vault.delete(`${INDEX_PREFIX}${id}`, opts);
      report.vaultRepaired.push(...vaultIndexDamaged);
    }
    const before = new Map<string, Buffer>();
    for (const o of await listAll(vault, KEYS_PREFIX, opts)) before.set(o.key, await vault.get(o.key, opts));
    const desc = await vault.get('strata.json', opts).catch(() => null);
    await syncDescriptionAndKeys(pool, vault, options.signal, { compareContent: true });
    for (const o of await listAll(pool.store, KEYS_PREFIX)) {
      const was = before.get(o.key);
      if (!was || !was.equals(await pool.store.get(o.key))) report.vaultRepaired.push(o.key);
    }
    if (!desc || !desc.equals(await pool.store.get('strata.json'))) report.vaultRepaired.push('strata.json');

    // D. Both copies again (structure only; the data just written was verified).
    const after = await checkPool(pool, opts);
    addCatalogKnownMissing(after, catalog, new Set(await pool.listManifestIds()), new Set(await pool.listIndexIds()));
    const vaultAfter = await checkPool(session.pool, opts);
    report.checkAfter = { ok: after.ok, problems: after.problems.length, vaultOk: vaultAfter.ok, vaultProblems: vaultAfter.problems.length };
  });
  await syncCatalog(pool, catalog);
  recordContact(catalog, ctx.clock.now());
  ctx.log.info(report, 'repair finished');
  return report;
}

function verifyWith(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Gets an object from the other copy and verifies it; returns the bytes, or why it cannot serve. */
async function fetchVerified(store: ObjectStore, key: string, verify: (data: Buffer) => string | null, opts: { signal?: AbortSignal }): Promise<Buffer | string> {
  let data: Buffer;
  try {
    data = await store.get(key, opts);
  } catch (err) {
    return isNotFound(err) || (err as StrataError).code === 'STRATA_NOT_FOUND' ? 'not in the other copy either' : `the other copy cannot be read: ${(err as Error).message}`;
  }
  const problem = verify(data);
  return problem ? `the other copy is damaged too: ${problem}` : data;
}

function indexedFromCatalog(catalog: Catalog, packId: string, size: number) {
  return {
    id: Buffer.from(packId, 'hex'),
    size,
    entries: catalog.blobsInPack(packId).map((b) => ({ type: b.type, id: b.id, offset: b.offset, length: b.length, rawLength: b.rawLength, compression: b.compression })),
  };
}

/**
 * Rewrites local index segments: those named (damaged or lost) from the catalog's record of their packs,
 * and any pack no index names from its own header. The new segment supersedes the old ones and is
 * written before they are deleted.
 */
async function rewriteLocalIndex(ctx: AgentContext, pool: Pool, catalog: Catalog, damaged: string[], opts: { signal?: AbortSignal }): Promise<string[]> {
  const packs = new Map<string, ReturnType<typeof indexedFromCatalog>>();
  for (const id of damaged) for (const p of catalog.packs().filter((x) => x.indexId === id)) packs.set(p.id, indexedFromCatalog(catalog, p.id, p.size));
  const report = await checkPool(pool, opts);
  for (const packId of report.unreferencedPacks) {
    if (packs.has(packId)) continue;
    const data = await pool.store.get(packKey(packId), opts);
    if (verifyPackBytes(pool, packId, data)) continue;
    const entries = readPackHeader(pool.keys.encKey, Buffer.from(packId, 'hex'), data, `pack ${packId.slice(0, 12)}`);
    packs.set(packId, { id: Buffer.from(packId, 'hex'), size: data.length, entries });
  }
  if (packs.size === 0) return [];
  // Only packs that are whole on disk go into the new segment.
  const present = new Map((await listAll(pool.store, PACKS_PREFIX)).map((o) => [o.key.split('/').pop()!, o.size]));
  const whole = [...packs.values()].filter((p) => present.get(p.id.toString('hex')) === p.size);
  const existing = new Set(await pool.listIndexIds());
  const supersedes = damaged.filter((id) => existing.has(id));
  const newId = await pool.writeIndex({ supersedes: supersedes.map((id) => Buffer.from(id, 'hex')), packs: whole }, opts);
  catalog.addIndexSegment(newId, whole.map((p) => ({ id: p.id.toString('hex'), size: p.size, entries: p.entries })));
  for (const id of damaged) {
    await pool.store.delete(`${INDEX_PREFIX}${id}`, opts);
    catalog.removeIndexSegment(id);
  }
  ctx.log.info({ newIndex: newId, replaced: damaged, packs: whole.length }, 'local index rewritten');
  return [`index/${newId} (replaces ${damaged.length ? damaged.map((d) => d.slice(0, 12)).join(', ') : 'none'}; ${whole.length} packs)`];
}

// --- soft delete ---

/**
 * Marks objects removed locally (packs of a prune, manifests of expired points) for deletion in the
 * vault: they get metadata `strata_deleted_at` and are removed by `purgeCloudDeletions` after 14 days.
 */
export async function softDeleteInVault(ctx: AgentContext, keys: string[]): Promise<number> {
  const catalog = ctx.catalog();
  const reg = getRegistration(catalog);
  if (!reg || keys.length === 0) return 0;
  const { raw } = await vaultStore(ctx);
  const now = ctx.clock.now();
  let n = 0;
  for (const key of keys) {
    try {
      await raw.setMetadata(key, { strata_deleted_at: new Date(now).toISOString() });
    } catch (err) {
      if (!(isNotFound(err) || (err as StrataError).code === 'STRATA_NOT_FOUND')) throw err;
      continue;
    }
    catalog.markCloudDeletion(key, now);
    if (key.startsWith(PACKS_PREFIX)) {
      // The pack's live blobs (if it was repacked) must reach the vault in their new packs before it is purged.
      catalog.setState(REWALK, true);
    }
    if (key.startsWith(SNAPSHOTS_PREFIX)) {
      const id = key.slice(SNAPSHOTS_PREFIX.length);
      const row = catalog.recoveryPoints().find((r) => r.id === id);
      // Gone from both copies: the recovery point no longer exists.
      if (row && row.diskState !== 'present') catalog.removeRecoveryPoint(id);
      else if (row) catalog.setRecoveryPointState(id, { cloud: 'deleted' });
    }
    crashPoint('vault-soft-deleted');
    n++;
  }
  return n;
}

/** Set when packs were soft-deleted: the next replication re-walks every cloud point (see replication.ts). */
export const REWALK = 'cloud.rewalk';

/**
 * Removes from the vault what was marked more than 14 days ago. Packs are purged only once a
 * replication has re-walked the cloud points since packs were marked (so repacked data is in the vault).
 */
export async function purgeCloudDeletions(ctx: AgentContext): Promise<string[]> {
  const catalog = ctx.catalog();
  if (!getRegistration(catalog)) return [];
  if (catalog.getState<boolean>(REWALK)) return [];
  const due = catalog.cloudDeletions(ctx.clock.now() - SOFT_DELETE_DAYS * DAY_MS);
  if (due.length === 0) return [];
  const { store } = await vaultStore(ctx);
  const removed: string[] = [];
  const purge = async (d: { key: string }) => {
    await store.delete(d.key);
    crashPoint('vault-purged');
    catalog.removeCloudDeletion(d.key);
    removed.push(d.key);
  };
  // Order: the manifests first (a recovery point never names a purged pack, not even for a moment),
  // then the new index, then the packs. Found by the prune crash suite: packs sort before snapshots,
  // and a kill after the first pack left the vault's manifests reaching packs no longer there.
  for (const d of due) if (!d.key.startsWith(PACKS_PREFIX)) await purge(d);
  const packsGone = due.some((d) => d.key.startsWith(PACKS_PREFIX));
  if (packsGone) {
    // The vault's index must stop naming purged packs: one new segment that supersedes all the old ones,
    // written before any pack is removed (a crash leaves the old segments superseded, never dangling).
    // It lists every pack the vault keeps: those its current segments name (the catalog forgets a pack
    // once prune deleted it locally, but a point soft-deleted later than these still needs it in the
    // vault), and those the catalog knows arrived; less the packs purged now. Found by the prune crash
    // suite: built from the catalog alone, it left the vault's soft-deleted points naming unindexed trees.
    const pool = await ctx.pool();
    const old = (await listAll(store, INDEX_PREFIX)).map((o) => o.key.slice(INDEX_PREFIX.length));
    const purgedPacks = new Set(due.filter((d) => d.key.startsWith(PACKS_PREFIX)).map((d) => d.key.split('/').pop()!));
    const segments = await Promise.all(old.map(async (id) => ({ id, seg: pool.decodeIndex(id, await store.get(`${INDEX_PREFIX}${id}`)) })));
    const supersededIds = new Set(segments.flatMap((s) => s.seg.supersedes.map((b) => b.toString('hex'))));
    const kept = new Map<string, IndexedPack>();
    for (const { id, seg } of segments) {
      if (supersededIds.has(id)) continue;
      for (const p of seg.packs) if (!purgedPacks.has(p.id.toString('hex'))) kept.set(p.id.toString('hex'), p);
    }
    for (const p of catalog.packs()) {
      if ((p.cloudState !== 'indexed' && p.cloudState !== 'uploaded') || kept.has(p.id) || purgedPacks.has(p.id)) continue;
      kept.set(p.id, {
        id: Buffer.from(p.id, 'hex'),
        size: p.size,
        entries: catalog.blobsInPack(p.id).map((b) => ({ type: b.type, id: b.id, offset: b.offset, length: b.length, rawLength: b.rawLength, compression: b.compression })),
      });
    }
    await pool.writeIndex({ supersedes: old.map((id) => Buffer.from(id, 'hex')), packs: [...kept.values()] }, { store });
    crashPoint('vault-purge-index-written');
    for (const id of old) await store.delete(`${INDEX_PREFIX}${id}`);
  }
  for (const d of due) if (d.key.startsWith(PACKS_PREFIX)) await purge(d);
  ctx.log.info({ removed: removed.length }, 'soft-deleted vault objects purged');
  return removed;
}

export type { RecoveryPointRow, Catalog };
