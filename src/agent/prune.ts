// The prune job: applies each protection group's disk retention to its recovery points, then prunes
// the pool under the exclusive lock (replica/prune.ts), brings the catalog in line, and tells whoever
// keeps another copy (the vault) what was deleted.
import { promises as fs } from 'node:fs';
import type { RecoveryPointRow } from '../catalog/catalog.js';
import { crashPoint } from '../crash.js';
import { syncCatalog } from '../replica/catalog-sync.js';
import { withLock } from '../replica/lock.js';
import { prunePool, type PruneProgress, type PruneReport } from '../replica/prune.js';
import { applyRetention, policyFromConfig, type KeepReason } from '../scheduler/retention.js';
import type { AgentContext } from './context.js';
import type { JobHooks } from './jobs.js';
import { softDeleteInVault } from './cloud-jobs.js';
import { getRegistration } from './vault.js';
import { PACKS_PREFIX, SNAPSHOTS_PREFIX, packKey, type Pool } from '../replica/pool.js';
import { listAll } from '../store/object-store.js';

/**
 * Catalog state: what the prune under way may delete locally, recorded before its first deletion and
 * cleared once the deletions reached `onDeleted` (the vault). A prune killed in between leaves it set;
 * the next prune hands what is gone from the pool to `onDeleted` first. Without it, a kill after the
 * local deletions left the vault holding expired points and their packs for good (found by the
 * prune kill points: nothing would ever report them again).
 */
export const PENDING_PROPAGATION = 'prune.pendingPropagation';

/** Unreferenced packs younger than this may belong to a backup in progress: kept. */
export const UNREFERENCED_GRACE_MS = 60 * 60 * 1000;

/** What a prune deleted from the local pool (ids; packs and segments as hex ids, manifests as recovery point ids). */
export interface DeletedObjects {
  packs: string[];
  indexSegments: string[];
  manifests: string[];
}

export interface PruneJobOptions extends JobHooks<PruneProgress> {
  dryRun?: boolean;
  /**
   * Called after the local deletions succeeded (never on a dry run, nor when nothing was deleted), so
   * the vault copy can be soft-deleted; and, at the start of a prune, with what an earlier prune
   * deleted but could not report (killed, or this callback failed). An error from it fails the job;
   * the local deletions stand and are reported again by the next prune: propagate idempotently.
   */
  onDeleted?: (deleted: DeletedObjects) => Promise<void> | void;
  /** Receives the catalog job id as soon as the job is recorded. */
  onStarted?: (jobId: number) => void;
  /** Default UNREFERENCED_GRACE_MS. */
  unreferencedGraceMs?: number;
}

export interface RetainedPoint {
  id: string;
  group: string;
  source: string;
  time: number;
  reasons?: KeepReason[];
}

export interface PruneJobResult extends PruneReport {
  jobId: number;
  /** Disk recovery points retention keeps (with why) and removes. */
  retention: { kept: RetainedPoint[]; removed: RetainedPoint[] };
}

/**
 * Retention over the catalog's recovery points: groups' policies; ad hoc points and unknown groups keep
 * everything. The vault mirrors the pool, so a point leaves the pool only when neither the disk
 * retention nor, for a point in the cloud, the online retention keeps it.
 */
export function diskRetention(ctx: AgentContext, points: RecoveryPointRow[]): { kept: RetainedPoint[]; removed: RetainedPoint[] } {
  const onDisk = points.filter((p) => p.diskState === 'present').map((p) => ({ ...p, copy: 'disk' as const }));
  const inCloud = points.filter((p) => p.diskState === 'present' && (p.cloudState === 'uploaded' || p.cloudState === 'uploading' || p.cloudState === 'pending')).map((p) => ({ ...p, copy: 'cloud' as const }));
  const cloudKeep = applyRetention(inCloud, {
    now: ctx.clock.now(),
    policy: (group) => {
      const g = ctx.config.protectionGroups.find((x) => x.name === group);
      return g ? policyFromConfig(g) : undefined;
    },
    ...(ctx.config.timezone ? { tz: ctx.config.timezone } : {}),
  }).keep;
  const cloudReasons = new Map(cloudKeep.map((k) => [k.point.id, k.reasons]));
  const { keep: diskKeep, remove: diskRemove } = applyRetention(onDisk, {
    now: ctx.clock.now(),
    policy: (group) => {
      const g = ctx.config.protectionGroups.find((x) => x.name === group);
      return g ? policyFromConfig(g) : undefined;
    },
    ...(ctx.config.timezone ? { tz: ctx.config.timezone } : {}),
  });
  const ref = (p: RecoveryPointRow) => ({ id: p.id, group: p.group, source: p.source, time: p.time });
  const keep = [...diskKeep.map((k) => ({ point: k.point as RecoveryPointRow, reasons: k.reasons }))];
  const remove: RecoveryPointRow[] = [];
  for (const p of diskRemove) {
    const byCloud = cloudReasons.get(p.id);
    if (byCloud) keep.push({ point: p, reasons: byCloud });
    else remove.push(p);
  }
  return { kept: keep.map((k) => ({ ...ref(k.point), reasons: k.reasons })), removed: remove.map(ref) };
}

export async function runPrune(ctx: AgentContext, options: PruneJobOptions = {}): Promise<PruneJobResult> {
  const dryRun = options.dryRun ?? false;
  const { pool, catalog } = await ctx.poolAndCatalog();
  const jobId = catalog.createJob(dryRun ? 'prune --dry-run' : 'prune', null, ctx.clock.now(), { trigger: options.trigger ?? 'ad hoc' });
  options.onStarted?.(jobId);
  const grace = options.unreferencedGraceMs ?? UNREFERENCED_GRACE_MS;
  const propagate = options.onDeleted ?? ((d: DeletedObjects) => propagateToVault(ctx, d));
  try {
    const result = await withLock(pool.store, { exclusive: true, operation: 'prune', clock: ctx.clock, host: ctx.host }, async () => {
      // Under the lock, nothing else writes: decide on the pool as it is now.
      await syncCatalog(pool, catalog);
      if (!dryRun) await finishPendingPropagation(ctx, pool, propagate);
      const retention = diskRetention(ctx, catalog.recoveryPoints());
      const report = await prunePool(pool, {
        deleteManifests: retention.removed.map((p) => p.id),
        dryRun,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        onPlanned: (planned) => {
          if (planned.manifests.length + planned.packs.length + planned.indexSegments.length > 0) catalog.setState(PENDING_PROPAGATION, planned);
          // The catalog first, then the pool: a kill after a manifest is deleted must not leave the
          // catalog recording it as present (check would report it missing). A kill before leaves the
          // manifest in the pool, and the next sync records it again.
          const rows = new Map(catalog.recoveryPoints().map((r) => [r.id, r]));
          catalog.transaction(() => {
            for (const id of planned.manifests) {
              const row = rows.get(id);
              if (!row || row.diskState !== 'present') continue;
              if (row.cloudState === 'none') catalog.removeRecoveryPoint(id);
              else catalog.setRecoveryPointState(id, { disk: 'deleted' });
            }
          });
        },
        // The new index segment is in the pool: the catalog reads it (and forgets the segments it
        // supersedes) before they are deleted.
        beforeDeletions: async () => {
          await syncCatalog(pool, catalog);
        },
        isOldUnreferenced: async (key) => {
          const st = await fs.stat(ctx.poolStore.path(key)).catch(() => null);
          return st !== null && ctx.clock.now() - st.mtimeMs >= grace;
        },
      });
      if (!dryRun) await syncCatalog(pool, catalog);
      if (!dryRun) crashPoint('prune-catalog-synced');
      return { ...report, jobId, retention };
    });
    const deleted: DeletedObjects = {
      packs: [...result.packsDeleted, ...result.packsRepacked, ...result.unreferencedPacksDeleted],
      indexSegments: result.indexSegmentsDeleted,
      manifests: result.manifestsDeleted,
    };
    ctx.log.info(
      { jobId, dryRun, manifests: deleted.manifests.length, packs: deleted.packs.length, repacked: result.packsRepacked.length, bytesFreed: result.bytesFreed },
      dryRun ? 'prune planned (dry run)' : 'prune finished',
    );
    if (!dryRun && deleted.packs.length + deleted.indexSegments.length + deleted.manifests.length > 0) await propagate(deleted);
    if (!dryRun) catalog.deleteState(PENDING_PROPAGATION);
    catalog.finishJob(jobId, result.damagedPacks.length ? 'warnings' : 'completed', ctx.clock.now(), summary(result));
    return result;
  } catch (err) {
    catalog.finishJob(jobId, 'failed', ctx.clock.now(), null, (err as Error).message);
    throw err;
  }
}

/**
 * What an earlier prune recorded as about to delete (PENDING_PROPAGATION) and is gone from the pool now
 * goes to `propagate`; what is still in the pool was not deleted (a damaged pack left alone) and is
 * dropped from the record. Called under the exclusive lock, so nothing else deletes meanwhile.
 */
async function finishPendingPropagation(ctx: AgentContext, pool: Pool, propagate: (d: DeletedObjects) => Promise<void> | void): Promise<void> {
  const catalog = ctx.catalog();
  const pending = catalog.getState<DeletedObjects>(PENDING_PROPAGATION);
  if (!pending) return;
  const manifests = new Set(await pool.listManifestIds());
  const segments = new Set(await pool.listIndexIds());
  const packs = new Set((await listAll(pool.store, PACKS_PREFIX)).map((o) => o.key.split('/').pop()!));
  const gone: DeletedObjects = {
    manifests: pending.manifests.filter((id) => !manifests.has(id)),
    packs: pending.packs.filter((id) => !packs.has(id)),
    indexSegments: pending.indexSegments.filter((id) => !segments.has(id)),
  };
  if (gone.manifests.length + gone.packs.length + gone.indexSegments.length > 0) {
    ctx.log.info({ manifests: gone.manifests.length, packs: gone.packs.length, indexSegments: gone.indexSegments.length }, 'reporting the deletions of an interrupted prune');
    await propagate(gone);
  }
  catalog.deleteState(PENDING_PROPAGATION);
}

function summary(r: PruneJobResult) {
  return {
    dryRun: r.dryRun,
    recoveryPointsRemoved: r.manifestsDeleted.length,
    packsDeleted: r.packsDeleted.length,
    packsRepacked: r.packsRepacked.length,
    unreferencedPacksDeleted: r.unreferencedPacksDeleted.length,
    bytesFreed: r.bytesFreed,
    damagedPacks: r.damagedPacks,
  };
}

/**
 * The default for `onDeleted`: what prune removed from the pool is soft-deleted in the vault (marked,
 * removed after 14 days). Packs rewritten by a repack are uploaded by the next replication before any
 * marked pack is purged.
 */
export async function propagateToVault(ctx: AgentContext, d: DeletedObjects): Promise<void> {
  if (!getRegistration(ctx.catalog())) return;
  const keys = [...d.manifests.map((m) => `${SNAPSHOTS_PREFIX}${m}`), ...d.packs.map((p) => packKey(p))];
  const marked = await softDeleteInVault(ctx, keys);
  crashPoint('prune-vault-marked');
  ctx.log.info({ marked }, 'prune propagated to the vault (soft delete)');
}
