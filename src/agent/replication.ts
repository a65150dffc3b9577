// Replication of recovery points to the vault: the packs they need are staged through the scratch area
// and uploaded, then a vault index segment lists them, then the manifests go last, so a cloud recovery
// point is never dangling. Resumable: what already arrived is recognised (stat) and not sent again.
//
// Pack cloud states in the catalog: none → uploaded (the blob is in the vault) → indexed (a vault index
// segment lists it) ; recovery points: none → pending (wanted in the cloud) → uploaded.
import { randomBytes } from 'node:crypto';
import { promises as fs, statfsSync } from 'node:fs';
import path from 'node:path';
import type { Catalog, JobTrigger, RecoveryPointRow } from '../catalog/catalog.js';
import { crashPoint } from '../crash.js';
import { StrataError, isNotFound, throwIfAborted } from '../errors.js';
import { BlobReader } from '../replica/blob-reader.js';
import type { IndexedPack } from '../replica/index-segment.js';
import { INDEX_PREFIX, KEYS_PREFIX, SNAPSHOTS_PREFIX, packKey, type Pool } from '../replica/pool.js';
import { withLock } from '../replica/lock.js';
import { listAll, type ObjectStore } from '../store/object-store.js';
import type { AgentContext } from './context.js';
import { gateJob, recordContact, vaultStore } from './vault.js';
import { purgeCloudDeletions } from './cloud-jobs.js';

const REWALK = 'cloud.rewalk';

export interface ReplicationProgress {
  packsDone: number;
  packsTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface ReplicationResult {
  recoveryPoints: string[];
  packsUploaded: number;
  packsAlreadyThere: number;
  bytesUploaded: number;
  retries: number;
  retriesByOperation: Record<string, number>;
  /** Vault objects removed because they were soft-deleted more than 14 days ago. */
  purged: string[];
  /** Seconds spent moving data (packs, index, manifests), without the job's setup (gate, pool, tree walk). */
  uploadSeconds: number;
}

/** Packs staged in scratch at once (each up to ~16 MiB): the scratch area's bound while uploading. */
const STAGE_SLOTS = 4;
/** The scratch area must hold at least this share of the data protected to the cloud. */
export const SCRATCH_MIN_SHARE = 0.05;

/** Marks a recovery point as wanted in the cloud; `replicate` uploads it. */
export function markForCloud(catalog: Catalog, rpId: string): void {
  const rp = catalog.findRecoveryPoint(rpId);
  if (rp.cloudState !== 'uploaded') catalog.setRecoveryPointState(rp.id, { cloud: 'pending' });
}

/** Checks the scratch area can hold 5% of the cloud-protected data (the latest point of each source). */
export function checkScratch(ctx: AgentContext, catalog: Catalog): { needed: number; available: number } {
  const latest = new Map<string, RecoveryPointRow>();
  for (const rp of catalog.recoveryPoints()) {
    if (rp.cloudState === 'none' || rp.cloudState === 'deleted') continue;
    latest.set(`${rp.group}\0${rp.source}`, rp);
  }
  const protectedBytes = [...latest.values()].reduce((a, rp) => a + (rp.stats['bytes'] ?? 0), 0);
  const needed = Math.ceil(protectedBytes * SCRATCH_MIN_SHARE);
  let available: number;
  try {
    const st = statfsSync(ctx.config.scratch);
    available = st.bavail * st.bsize;
  } catch (err) {
    throw new StrataError('STRATA_SCRATCH_MISSING', `the scratch area ${ctx.config.scratch} is not usable: ${(err as Error).message}; create it or fix "scratch" in the config`, { cause: err });
  }
  const override = process.env['STRATA_SCRATCH_AVAILABLE'];
  if (override) available = Number(override);
  if (available < needed) {
    throw new StrataError(
      'STRATA_SCRATCH_TOO_SMALL',
      `the scratch area ${ctx.config.scratch} has ${fmt(available)} free but must hold at least 5% of the data protected to the cloud (${fmt(needed)} of ${fmt(protectedBytes)}); free space there or point "scratch" at a larger local disk`,
    );
  }
  return { needed, available };
}

function fmt(n: number): string {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/** Uploads every recovery point marked pending (and what it needs). Takes a shared pool lock. */
export async function replicate(ctx: AgentContext, options: { trigger?: JobTrigger; signal?: AbortSignal; onProgress?: (p: ReplicationProgress) => void } = {}): Promise<ReplicationResult> {
  const { pool, catalog } = await ctx.poolAndCatalog();
  const trigger = options.trigger ?? 'ad hoc';
  await gateJob(ctx, 'backup-cloud', { kind: 'replicate', group: null, trigger, ...(options.signal ? { signal: options.signal } : {}) });
  const pending = catalog.recoveryPoints().filter((r) => (r.cloudState === 'pending' || r.cloudState === 'uploading') && r.diskState === 'present');
  // After a prune soft-deleted packs, the points already in the vault are walked again, so data a
  // repack moved into new packs is uploaded before the old packs are purged.
  const rewalk = catalog.getState<boolean>(REWALK) ? catalog.recoveryPoints().filter((r) => r.cloudState === 'uploaded' && r.diskState === 'present') : [];
  const jobId = catalog.createJob('replicate', pending[0]?.group || null, ctx.clock.now(), { trigger });
  try {
    const result = await withLock(pool.store, { exclusive: false, operation: 'replication', clock: ctx.clock, host: ctx.host }, async () => {
      checkScratch(ctx, catalog);
      const r = await replicateUnderLock(ctx, pool, catalog, pending, rewalk, options);
      if (rewalk.length > 0 || catalog.getState<boolean>(REWALK)) catalog.setState(REWALK, false);
      // Soft-deleted objects past their 14 days go now that the vault holds everything live.
      r.purged = await purgeCloudDeletions(ctx);
      return r;
    });
    catalog.finishJob(jobId, 'completed', ctx.clock.now(), result);
    ctx.log.info(result, 'replication finished');
    return result;
  } catch (err) {
    catalog.finishJob(jobId, 'failed', ctx.clock.now(), null, (err as Error).message);
    throw err;
  }
}

async function replicateUnderLock(
  ctx: AgentContext,
  pool: Pool,
  catalog: Catalog,
  pending: RecoveryPointRow[],
  rewalk: RecoveryPointRow[],
  options: { signal?: AbortSignal; onProgress?: (p: ReplicationProgress) => void },
): Promise<ReplicationResult> {
  const signal = options.signal;
  const { store: vault, retry } = await vaultStore(ctx);
  const result: ReplicationResult = { recoveryPoints: [], packsUploaded: 0, packsAlreadyThere: 0, bytesUploaded: 0, retries: 0, retriesByOperation: {}, purged: [], uploadSeconds: 0 };

  // 1. The pool's description and key slots (opaque: sealed with the passphrase).
  await syncDescriptionAndKeys(pool, vault, signal);

  // 2. Which packs the pending points need.
  const reader = new BlobReader(pool.store, pool.keys, catalog.blobLookup());
  const needed = new Set<string>();
  for (const rp of pending) {
    catalog.setRecoveryPointState(rp.id, { cloud: 'uploading' });
    await collectPacks(reader, rp.tree, needed, signal);
  }
  for (const rp of rewalk) await collectPacks(reader, rp.tree, needed, signal);
  const toUpload = [...needed].map((id) => catalog.pack(id)!).filter((p) => p.cloudState === 'none' || p.cloudState === 'deleted');
  const progress: ReplicationProgress = { packsDone: 0, packsTotal: toUpload.length, bytesDone: 0, bytesTotal: toUpload.reduce((a, p) => a + p.size, 0) };
  options.onProgress?.({ ...progress });

  // 3. Upload, staged through scratch, a bounded number at a time.
  const uploadStart = process.hrtime.bigint();
  const staging = path.join(ctx.config.scratch, 'staging');
  await fs.mkdir(staging, { recursive: true, mode: 0o700 });
  let next = 0;
  const worker = async () => {
    while (next < toUpload.length) {
      throwIfAborted(signal);
      const pack = toUpload[next++]!;
      const key = packKey(pack.id);
      const there = await vault.stat(key, signal ? { signal } : {}).catch((err: unknown) => {
        if (isNotFound(err) || (err as { code?: string }).code === 'STRATA_NOT_FOUND') return null;
        throw err;
      });
      if (there && there.size === pack.size) {
        result.packsAlreadyThere++;
      } else {
        const staged = path.join(staging, `${pack.id}.${randomBytes(4).toString('hex')}`);
        try {
          // Packs are immutable: on the same file system the staged copy is a hard link (no bytes copied).
          await fs.link(ctx.poolStore.path(key), staged).catch(async (err: NodeJS.ErrnoException) => {
            if (err.code !== 'EXDEV' && err.code !== 'EPERM' && err.code !== 'EMLINK') throw err;
            await fs.copyFile(ctx.poolStore.path(key), staged);
          });
          const data = await fs.readFile(staged);
          if (data.length !== pack.size) throw new StrataError('STRATA_PACK_DAMAGED', `pack ${pack.id} is ${data.length} bytes on disk, the index says ${pack.size}; run 'strata check' and 'strata repair'`, { kind: 'failed' });
          await vault.put(key, data, signal ? { signal } : {});
        } catch (err) {
          if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'ENOENT') {
            throw new StrataError('STRATA_PACK_MISSING', `pack ${pack.id} is missing from the local pool; run 'strata check' and 'strata repair'`, { kind: 'failed', cause: err });
          }
          throw err;
        } finally {
          await fs.rm(staged, { force: true });
        }
        result.packsUploaded++;
        result.bytesUploaded += pack.size;
      }
      catalog.setPackCloudState(pack.id, 'uploaded', ctx.clock.now());
      crashPoint('replication-pack-uploaded');
      progress.packsDone++;
      progress.bytesDone += pack.size;
      options.onProgress?.({ ...progress });
    }
  };
  await Promise.all(Array.from({ length: STAGE_SLOTS }, worker));

  // 4. A vault index segment for every pack uploaded but not yet indexed there.
  const unindexed = catalog.packsInCloudState('uploaded');
  if (unindexed.length > 0) {
    const packs: IndexedPack[] = unindexed.map((p) => ({
      id: Buffer.from(p.id, 'hex'),
      size: p.size,
      entries: catalog.blobsInPack(p.id).map((b) => ({ type: b.type, id: b.id, offset: b.offset, length: b.length, rawLength: b.rawLength, compression: b.compression })),
    }));
    await pool.writeIndex({ supersedes: [], packs }, { store: vault, ...(signal ? { signal } : {}) });
    crashPoint('replication-index-uploaded');
    catalog.transaction(() => {
      for (const p of unindexed) catalog.setPackCloudState(p.id, 'indexed', ctx.clock.now());
    });
  }

  // 5. The manifests, last.
  for (const rp of pending) {
    throwIfAborted(signal);
    const key = `${SNAPSHOTS_PREFIX}${rp.id}`;
    await vault.put(key, await pool.store.get(key), signal ? { signal } : {});
    catalog.setRecoveryPointState(rp.id, { cloud: 'uploaded' });
    result.recoveryPoints.push(rp.id);
  }
  result.uploadSeconds = Number(process.hrtime.bigint() - uploadStart) / 1e9;
  recordContact(catalog, ctx.clock.now());
  result.retries = retry.counters.retries;
  result.retriesByOperation = { ...retry.counters.byOperation };
  return result;
}

/** Walks a tree and adds the id of every pack holding one of its blobs. */
async function collectPacks(reader: BlobReader, treeId: string, out: Set<string>, signal?: AbortSignal): Promise<void> {
  const seenTrees = new Set<string>();
  const walk = async (id: string): Promise<void> => {
    if (seenTrees.has(id)) return;
    seenTrees.add(id);
    out.add(reader.locate(id).packId);
    for (const n of (await reader.tree(id, signal)).nodes) {
      if (n.type === 'dir') await walk(n.subtree!);
      else if (n.type === 'file') for (const c of n.content ?? []) out.add(reader.locate(c).packId);
    }
  };
  await walk(treeId);
}



/** strata.json and the key slots, mirrored: new slots first, then slots the pool no longer has are removed. */
export async function syncDescriptionAndKeys(pool: Pool, vault: ObjectStore, signal?: AbortSignal, options: { compareContent?: boolean; keepRemote?: boolean } = {}): Promise<void> {
  const opts = signal ? { signal } : {};
  const local = await pool.store.get('strata.json');
  const remote = await vault.get('strata.json', opts).catch(() => null);
  if (!remote || !remote.equals(local)) await vault.put('strata.json', local, opts);
  const localSlots = new Set((await listAll(pool.store, KEYS_PREFIX)).map((o) => o.key));
  const remoteSlots = new Set((await listAll(vault, KEYS_PREFIX, opts)).map((o) => o.key));
  for (const key of localSlots) {
    const mine = await pool.store.get(key);
    if (!remoteSlots.has(key)) await vault.put(key, mine, opts);
    else if (options.compareContent) {
      const theirs = await vault.get(key, opts).catch(() => null);
      if (!theirs || !theirs.equals(mine)) await vault.put(key, mine, opts);
    }
  }
  if (!options.keepRemote) for (const key of remoteSlots) if (!localSlots.has(key)) await vault.delete(key, opts);
}
