// The jobs strata runs, composed from the layers below: init, backup, restore, check, catalog
// rebuild and passphrase change. The CLI runs them in-process; the daemon runs the same functions.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Catalog, type JobTrigger } from '../catalog/catalog.js';
import type { SourceConfig } from '../config/types.js';
import { crashPoint } from '../crash.js';
import { generatePassphrase, validatePassphrase } from '../crypto/passphrase.js';
import { StrataError, toStrataError } from '../errors.js';
import { backupDirectory, startTreeWalk, type BackupOptions, type BackupProgress, type TreeWalk } from '../replica/backup.js';
import { BlobReader } from '../replica/blob-reader.js';
import { syncCatalog } from '../replica/catalog-sync.js';
import { checkPool, type CheckReport } from '../replica/check.js';
import { withLock } from '../replica/lock.js';
import type { BackupStats } from '../replica/manifest.js';
import { Pool } from '../replica/pool.js';
import { restoreTree, type ConflictPolicy, type RestoreProgress, type RestoreResult } from '../replica/restore.js';
import { backupSources, listableEarly, sourceExclude } from './backup-sources.js';
import { writeSecretFile } from './secret-file.js';
import { markForCloud, replicate, syncDescriptionAndKeys, type ReplicationResult } from './replication.js';
import { gateJob, getRegistration, vaultStore } from './vault.js';
import type { AgentContext } from './context.js';
import { snapshotSqlite } from './sqlite-source.js';

export interface JobHooks<P> {
  /** What started the job (recorded with it); 'ad hoc' unless a schedule did. */
  trigger?: JobTrigger;
  signal?: AbortSignal;
  onProgress?: (p: P) => void;
  /** Called once with the catalog job id, as soon as the job is recorded (the daemon follows jobs by it). */
  onStarted?: (jobId: number) => void;
}

// --- init ---

export interface InitResult {
  poolId: string;
  pool: string;
  passphraseFile: string;
  /** Set when strata generated the passphrase (shown once, also in the passphrase file). */
  generatedPassphrase?: string;
}

export async function initPool(ctx: AgentContext, options: { generatePassphrase?: boolean } = {}): Promise<InitResult> {
  const file = ctx.config.passphraseFile;
  let generated: string | undefined;
  const exists = await fs.stat(file).then(
    () => true,
    () => false,
  );
  if (!exists) {
    if (!options.generatePassphrase) {
      throw new StrataError('STRATA_PASSPHRASE_FILE', `passphrase file ${file} does not exist; write a passphrase of at least 16 characters there, or run 'strata init --generate-passphrase'`, {
        kind: 'usage',
      });
    }
    generated = generatePassphrase();
    await writeSecretFile(file, generated + '\n');
  } else if (options.generatePassphrase) {
    throw new StrataError('STRATA_PASSPHRASE_FILE', `passphrase file ${file} already exists; remove --generate-passphrase to use it`, { kind: 'usage' });
  }
  const pool = await Pool.init(ctx.poolStore, ctx.passphrase(), { now: ctx.clock.now() });
  ctx.setPool(pool);
  await fs.mkdir(ctx.config.scratch, { recursive: true, mode: 0o700 });
  const catalog = ctx.catalog();
  await syncCatalog(pool, catalog);
  ctx.log.info({ poolId: pool.description.id, pool: ctx.config.pool }, 'pool created');
  return { poolId: pool.description.id, pool: ctx.config.pool, passphraseFile: file, ...(generated ? { generatedPassphrase: generated } : {}) };
}

// --- backup ---

export interface SourceResult {
  source: string;
  recoveryPoint: string | null;
  stats: BackupStats | null;
  warnings: string[];
  error?: { code: string; message: string };
}

export interface BackupJobResult {
  jobId: number;
  group: string;
  state: 'completed' | 'warnings' | 'failed';
  sources: SourceResult[];
  /** The upload to the vault, when the job went to the cloud. */
  cloud?: ReplicationResult;
  /** Why the upload did not happen (the disk recovery point stands; the next run retries). */
  cloudError?: string;
}

export interface BackupJobOptions extends JobHooks<BackupProgress & { source: string }> {
  group?: string;
  path?: string;
  exclude?: string[];
  /** Where the recovery point goes. Default: disk, then the cloud when the group has online protection. */
  to?: 'disk' | 'cloud' | 'both';
  onFileError?: (source: string, relPath: string, message: string) => void;
}

export async function runBackup(ctx: AgentContext, options: BackupJobOptions): Promise<BackupJobResult> {
  const { group, sources } = backupSources(ctx.config, options);
  const groupConfig = ctx.config.protectionGroups.find((g) => g.name === group);
  const to = options.to ?? (groupConfig?.online ? 'both' : 'disk');
  // The first source's tree is listed from now on (if the CLI has not started that already), while the
  // gate is asked and the pool's key derived.
  const first = sources[0];
  let early: TreeWalk | null = null;
  if (to !== 'cloud' && first && listableEarly(first)) {
    const exclude = sourceExclude(first, options);
    early = ctx.takeEarlyWalk(first.path, exclude) ?? startTreeWalk(first.path, exclude, { ...(options.signal ? { signal: options.signal } : {}), spare: ctx.takeSpareLister() });
  }
  try {
    return await runBackupWith(ctx, options, group, sources, to, () => {
      const walk = early;
      early = null;
      return walk;
    });
  } finally {
    await early?.close();
  }
}

async function runBackupWith(
  ctx: AgentContext,
  options: BackupJobOptions,
  group: string,
  sources: SourceConfig[],
  to: 'disk' | 'cloud' | 'both',
  takeEarlyWalk: () => TreeWalk | null,
): Promise<BackupJobResult> {
  // A server backs up nothing, not even to disk, before it is registered; then the gate decides.
  const trigger = options.trigger ?? 'ad hoc';
  const job = { kind: 'backup', group: group || null, trigger, ...(options.signal ? { signal: options.signal } : {}) };
  ctx.prefetchPool();
  await gateJob(ctx, 'backup-disk', job);
  if (to !== 'disk') await gateJob(ctx, 'backup-cloud', job);
  // The dedup set is read while the key is derived (the generation tells the backup whether it is still exact).
  let known: BackupOptions['known'] | null = to !== 'cloud' ? ctx.catalog().loadKnownBlobIds() : null;
  const { pool, catalog } = await ctx.poolAndCatalog();
  if (to === 'cloud') {
    // The latest disk recovery point of each source goes to the cloud; none is made.
    const results: SourceResult[] = [];
    for (const source of sources) {
      const latest = catalog.recoveryPoints({ group, source: source.path }).filter((r) => r.diskState === 'present').at(-1);
      if (!latest) {
        results.push({ source: source.path, recoveryPoint: null, stats: null, warnings: [], error: { code: 'STRATA_RP_NOT_FOUND', message: `no disk recovery point of ${source.path} to send to the cloud; run a backup to disk first` } });
        continue;
      }
      markForCloud(catalog, latest.id);
      results.push({ source: source.path, recoveryPoint: latest.id, stats: latest.stats as unknown as BackupStats, warnings: [] });
    }
    const jobId = catalog.createJob('backup --to cloud', group || null, ctx.clock.now(), { trigger });
    options.onStarted?.(jobId);
    const cloud = await replicate(ctx, { trigger, ...(options.signal ? { signal: options.signal } : {}) });
    const failed = results.some((r) => r.error);
    catalog.finishJob(jobId, failed ? 'failed' : 'completed', ctx.clock.now(), { sources: results, cloud });
    return { jobId, group, state: failed ? 'failed' : 'completed', sources: results, cloud };
  }
  const jobId = catalog.createJob('backup', group || null, ctx.clock.now(), { trigger });
  options.onStarted?.(jobId);
  const results: SourceResult[] = [];
  try {
    await withLock(pool.store, { exclusive: false, operation: `backup ${group || options.path}`, clock: ctx.clock, host: ctx.host }, async () => {
      for (const source of sources) {
        const first = source === sources[0];
        const early = first ? { walk: takeEarlyWalk(), known } : { walk: null, known: null };
        known = null;
        results.push(await backupSource(ctx, pool, catalog, group, source, options, jobId, early));
      }
    });
  } catch (err) {
    catalog.finishJob(jobId, 'failed', ctx.clock.now(), { sources: results }, (err as Error).message);
    throw err;
  }
  const failed = results.some((r) => r.error);
  const warned = results.some((r) => r.warnings.length > 0);
  let state: BackupJobResult['state'] = failed ? 'failed' : warned ? 'warnings' : 'completed';
  let cloud: ReplicationResult | undefined;
  let cloudError: string | null = null;
  if (to === 'both') {
    for (const r of results) if (r.recoveryPoint) markForCloud(catalog, r.recoveryPoint);
    try {
      cloud = await replicate(ctx, options.signal ? { signal: options.signal } : {});
    } catch (err) {
      // The disk recovery point stands; the upload waits and is retried by the next run.
      if (options.signal?.aborted) throw err;
      cloudError = `${(err as StrataError).code ?? 'STRATA_REPLICATION_FAILED'}: ${(err as Error).message}`;
      ctx.log.warn({ err: (err as Error).message }, 'replication failed; it is retried with the next run');
      if (state === 'completed') state = 'warnings';
    }
  }
  catalog.finishJob(jobId, state, ctx.clock.now(), { sources: results, cloud: cloud ?? null, cloudError }, failed ? results.find((r) => r.error)!.error!.message : null);
  ctx.log.info({ jobId, group, state, sources: results.map((r) => ({ source: r.source, rp: r.recoveryPoint, warnings: r.warnings.length })) }, 'backup finished');
  return { jobId, group, state, sources: results, ...(cloud ? { cloud } : {}), ...(cloudError ? { cloudError } : {}) };
}

async function backupSource(
  ctx: AgentContext,
  pool: Pool,
  catalog: Catalog,
  group: string,
  source: SourceConfig,
  options: BackupJobOptions,
  jobId: number,
  early: { walk: TreeWalk | null; known: BackupOptions['known'] | null },
): Promise<SourceResult> {
  const { walk, known } = early;
  const warnings: string[] = [];
  let lastProgressWrite = 0;
  const hooks = {
    host: ctx.host,
    clock: ctx.clock,
    ...(options.signal ? { signal: options.signal } : {}),
    onProgress: (p: BackupProgress) => {
      options.onProgress?.({ ...p, source: source.path });
      const now = ctx.clock.now();
      if (now - lastProgressWrite > 1000) {
        lastProgressWrite = now;
        catalog.updateJobProgress(jobId, { ...p, source: source.path });
      }
    },
    onFileError: (rel: string, message: string) => {
      options.onFileError?.(source.path, rel, message);
      ctx.log.warn({ source: source.path, path: rel, message }, 'file not backed up');
    },
  };
  try {
    if (source.pre) {
      // Reported, so that a follower (or `strata status`) sees the job in its pre command, which may take long (a dump).
      hooks.onProgress({ phase: 'pre command', files: 0, bytes: 0, totalFiles: null, totalBytes: null, newBytes: 0, currentPath: '' });
      await runHook(source.pre, 'pre', source.path);
    }
    try {
      if (source.type === 'sqlite') {
        const snap = await snapshotSqlite(source.path, ctx.config.scratch);
        try {
          const { id, manifest } = await backupDirectory(pool, catalog, { ...hooks, group, source: source.path, sourceType: 'sqlite', snapshotDir: snap.dir, ...(known ? { known } : {}) });
          return { source: source.path, recoveryPoint: id, stats: manifest.stats, warnings: manifest.warnings };
        } finally {
          await snap.cleanup();
        }
      }
      const { id, manifest } = await backupDirectory(pool, catalog, { ...hooks, group, source: source.path, exclude: sourceExclude(source, options), ...(walk ? { walk } : {}), ...(known ? { known } : {}) });
      warnings.push(...manifest.warnings);
      return { source: source.path, recoveryPoint: id, stats: manifest.stats, warnings };
    } finally {
      if (source.post) await runHook(source.post, 'post', source.path);
    }
  } catch (err) {
    if (options.signal?.aborted) throw err;
    if (err instanceof StrataError && (err.kind === 'gate' || err.code === 'STRATA_LOCKED')) throw err;
    ctx.log.error({ err, source: source.path }, 'backup of a source failed');
    const e = toStrataError(err);
    return { source: source.path, recoveryPoint: null, stats: null, warnings, error: { code: e.code, message: e.message } };
  }
}

async function runHook(command: string, which: string, source: string): Promise<void> {
  const { spawn } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, STRATA_SOURCE: source } });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new StrataError('STRATA_HOOK_FAILED', `the ${which} command for ${source} exited with ${code}: ${command}`, { kind: 'failed' })),
    );
  });
}

// --- recovery points ---

export async function listRecoveryPoints(ctx: AgentContext, options: { group?: string } = {}) {
  let catalog: Catalog;
  try {
    catalog = (await ctx.poolAndCatalog()).catalog;
  } catch (err) {
    // An alternate server has no local pool: its catalog (rebuilt from the cloud) still lists the vault's points.
    if ((err as StrataError).code !== 'STRATA_POOL_MISSING' || ctx.catalog().recoveryPoints().length === 0) throw err;
    catalog = ctx.catalog();
  }
  return catalog.recoveryPoints(options.group === undefined ? {} : { group: options.group });
}

// --- restore ---

export interface RestoreJobOptions extends JobHooks<RestoreProgress> {
  recoveryPoint: string;
  group?: string;
  item?: string;
  target: string;
  onConflict: ConflictPolicy;
}

export async function runRestore(ctx: AgentContext, options: RestoreJobOptions): Promise<RestoreResult & { jobId: number; recoveryPoint: string }> {
  await gateJob(ctx, 'restore-disk', { kind: 'restore', group: options.group ?? null, trigger: options.trigger ?? 'ad hoc', ...(options.signal ? { signal: options.signal } : {}) });
  const opening = ctx.poolAndCatalog();
  opening.catch(() => {}); // awaited below
  // A whole recovery point needs most of the blob index: it is read now, while the passphrase's key is
  // derived on another thread (this one is idle meanwhile), and used if the pool changes nothing
  // (measured: ~0.25 s of a 2 GiB restore). A single item needs a few lookups: not read ahead.
  const preloaded = options.item === undefined ? ctx.catalog().blobIndexSnapshot() : null;
  const { pool, catalog } = await opening;
  const rp = catalog.findRecoveryPoint(options.recoveryPoint, options.group);
  if (rp.diskState !== 'present') {
    throw new StrataError('STRATA_RP_NOT_ON_DISK', `recovery point ${rp.id.slice(0, 12)} is not in the local pool; restore it with --from cloud`, { kind: 'usage' });
  }
  const jobId = catalog.createJob('restore', rp.group || null, ctx.clock.now(), { trigger: options.trigger ?? 'ad hoc' });
  options.onStarted?.(jobId);
  try {
    const result = await withLock(pool.store, { exclusive: false, operation: 'restore', clock: ctx.clock, host: ctx.host }, async () => {
      const reader = new BlobReader(pool.store, pool.keys, catalog.blobLookup({ preloaded }));
      return restoreTree(reader, rp.tree, {
        spareWorkers: ctx.takeSpareWorkers(),
        target: path.resolve(options.target),
        onConflict: options.onConflict,
        ...(options.item !== undefined ? { item: options.item } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      });
    });
    catalog.finishJob(jobId, result.warnings.length ? 'warnings' : 'completed', ctx.clock.now(), { recoveryPoint: rp.id, target: options.target, files: result.files, bytes: result.bytes });
    return { ...result, jobId, recoveryPoint: rp.id };
  } catch (err) {
    catalog.finishJob(jobId, 'failed', ctx.clock.now(), null, (err as Error).message);
    throw err;
  }
}

// --- check ---

export async function runCheck(ctx: AgentContext, options: JobHooks<{ phase: string; done: number; total: number; bytes: number }> & { readData?: boolean }): Promise<CheckReport> {
  const pool = await ctx.pool();
  const catalog = ctx.catalog();
  const jobId = catalog.createJob(options.readData ? 'check --read-data' : 'check', null, ctx.clock.now(), { trigger: options.trigger ?? 'ad hoc' });
  options.onStarted?.(jobId);
  try {
    const report = await withLock(pool.store, { exclusive: false, operation: 'check', clock: ctx.clock, host: ctx.host }, () =>
      checkPool(pool, {
        readData: options.readData ?? false,
        spareWorkers: ctx.takeSpareWorkers(),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      }),
    );
    addCatalogKnownMissing(report, catalog, new Set(await pool.listManifestIds()), new Set(await pool.listIndexIds()));
    // Keep the catalog's view of local pack health current.
    const damaged = new Set(report.problems.filter((p) => p.kind === 'pack').map((p) => p.object));
    for (const pack of catalog.packs()) {
      const want = damaged.has(pack.id) ? (report.problems.find((p) => p.object === pack.id)?.problem === 'missing' ? 'missing' : 'damaged') : 'present';
      if (pack.localState !== want) catalog.setPackLocalState(pack.id, want);
    }
    catalog.finishJob(jobId, report.ok ? 'completed' : 'failed', ctx.clock.now(), { problems: report.problems.length, packs: report.packs, bytesRead: report.bytesRead });
    return report;
  } catch (err) {
    catalog.finishJob(jobId, 'failed', ctx.clock.now(), null, (err as Error).message);
    throw err;
  }
}

/**
 * What only the catalog can tell: recovery points and index segments it knows that are gone from the
 * pool (a deleted manifest or index segment leaves no trace in the pool itself).
 */
export function addCatalogKnownMissing(report: CheckReport, catalog: Catalog, manifests: Set<string>, indexIds: Set<string>): void {
  for (const rp of catalog.recoveryPoints()) {
    if (rp.diskState !== 'present' || manifests.has(rp.id)) continue;
    report.problems.push({ kind: 'manifest', object: `snapshots/${rp.id}`, problem: 'missing (the catalog records it)', affected: [`${rp.id.slice(0, 12)}: the whole recovery point of ${rp.source}`], affectedCount: 1 });
  }
  for (const id of catalog.indexSegmentIds()) {
    if (id.startsWith('cloud:') || indexIds.has(id)) continue;
    const packs = catalog.packs().filter((p) => p.indexId === id).length;
    report.problems.push({ kind: 'index', object: `index/${id}`, problem: `missing (the catalog records it, listing ${packs} pack(s))`, affected: [], affectedCount: 0 });
  }
  report.ok = report.problems.length === 0;
}

// --- catalog rebuild ---

export async function rebuildCatalogFromDisk(ctx: AgentContext) {
  const pool = await ctx.pool();
  const catalog = ctx.catalog();
  catalog.clearPoolCache();
  const result = await syncCatalog(pool, catalog);
  return { ...result, recoveryPoints: catalog.recoveryPoints().length, packs: catalog.packs().length };
}

// --- passphrase change ---

/**
 * Adds a key slot for the new passphrase, writes it to the passphrase file, then removes the old slot.
 * A crash at any step leaves a pool that the passphrase file opens. Data is untouched.
 */
export async function changePassphrase(ctx: AgentContext, options: { newPassphrase: string }): Promise<{ slot: string; removed: string; vaultUpdated: boolean }> {
  validatePassphrase(options.newPassphrase);
  const pool = await ctx.pool();
  return withLock(pool.store, { exclusive: true, operation: 'passphrase change', clock: ctx.clock, host: ctx.host }, async () => {
    const slot = await pool.addKeySlot(options.newPassphrase, ctx.clock.now());
    crashPoint('passphrase-slot-added');
    // Order: the new slot reaches every copy before the passphrase file changes, and the old slot goes
    // only after; a crash anywhere leaves both copies opened by whatever the file holds.
    const registered = Boolean(getRegistration(ctx.catalog()));
    const vault = registered ? await vaultStore(ctx).then((v) => v.store).catch(() => null) : null;
    let vaultUpdated = false;
    if (vault) {
      try {
        await syncDescriptionAndKeys(pool, vault, undefined, { compareContent: true, keepRemote: true });
        vaultUpdated = true;
      } catch (err) {
        ctx.log.warn({ err: (err as Error).message }, 'new key slot not yet in the vault; it is uploaded when the vault is next opened');
      }
    }
    crashPoint('passphrase-vault-slot-added');
    await writeSecretFile(ctx.config.passphraseFile, options.newPassphrase + '\n');
    crashPoint('passphrase-file-written');
    await pool.removeKeySlot(pool.slotId);
    ctx.log.info({ newSlot: slot, removedSlot: pool.slotId }, 'passphrase changed');
    if (vault && vaultUpdated) {
      try {
        await syncDescriptionAndKeys(pool, vault, undefined, { compareContent: true });
      } catch (err) {
        vaultUpdated = false;
        ctx.log.warn({ err: (err as Error).message }, 'old key slot not yet removed from the vault; the next replication does it');
      }
    }
    return { slot, removed: pool.slotId, vaultUpdated };
  });
}

export { Catalog };
