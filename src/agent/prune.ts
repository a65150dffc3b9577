// The prune job: applies each protection group's disk retention to its recovery points, then prunes
// the pool under the exclusive lock (replica/prune.ts), brings the catalog in line, and tells whoever
// keeps another copy (the vault) what was deleted.
import { promises as fs } from 'node:fs';
import type { RecoveryPointRow } from '../catalog/catalog.js';
import { syncCatalog } from '../replica/catalog-sync.js';
import { withLock } from '../replica/lock.js';
import { prunePool, type PruneProgress, type PruneReport } from '../replica/prune.js';
import { applyRetention, policyFromConfig, type KeepReason } from '../scheduler/retention.js';
import type { AgentContext } from './context.js';
import type { JobHooks } from './jobs.js';
import { softDeleteInVault } from './cloud-jobs.js';
import { getRegistration } from './vault.js';
import { SNAPSHOTS_PREFIX, packKey } from '../replica/pool.js';

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
   * Called once, after the local deletions succeeded (never on a dry run, nor when nothing was
   * deleted), so the vault copy can be soft-deleted. An error from it fails the job; the local
   * deletions stand (the next prune does not report them again: propagate idempotently).
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
  try {
    const result = await withLock(pool.store, { exclusive: true, operation: 'prune', clock: ctx.clock, host: ctx.host }, async () => {
      // Under the lock, nothing else writes: decide on the pool as it is now.
      await syncCatalog(pool, catalog);
      const retention = diskRetention(ctx, catalog.recoveryPoints());
      const report = await prunePool(pool, {
        deleteManifests: retention.removed.map((p) => p.id),
        dryRun,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        isOldUnreferenced: async (key) => {
          const st = await fs.stat(ctx.poolStore.path(key)).catch(() => null);
          return st !== null && ctx.clock.now() - st.mtimeMs >= grace;
        },
      });
      if (!dryRun) await syncCatalog(pool, catalog);
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
    if (!dryRun && deleted.packs.length + deleted.indexSegments.length + deleted.manifests.length > 0) {
      await (options.onDeleted ?? ((d: DeletedObjects) => propagateToVault(ctx, d)))(deleted);
    }
    catalog.finishJob(jobId, result.damagedPacks.length ? 'warnings' : 'completed', ctx.clock.now(), summary(result));
    return result;
  } catch (err) {
    catalog.finishJob(jobId, 'failed', ctx.clock.now(), null, (err as Error).message);
    throw err;
  }
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
  ctx.log.info({ marked }, 'prune propagated to the vault (soft delete)');
}
