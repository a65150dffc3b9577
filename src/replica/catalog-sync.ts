// Brings the catalog in line with what a pool holds: index segments and recovery points. The pool is
// the truth; the catalog is its cache. `catalog rebuild` is clear + sync.
import type { Catalog } from '../catalog/catalog.js';
import type { Manifest } from './manifest.js';
import type { Pool } from './pool.js';

export interface SyncResult {
  addedSegments: number;
  removedSegments: number;
  addedPoints: number;
  removedPoints: number;
  /** Objects that could not be read (damaged); `check` reports them in full. */
  unreadable: string[];
}

const SUPERSEDED_KEY = 'index.superseded';

/**
 * `copy: 'disk'` (default) syncs with the local pool: recovery points found are present on disk,
 * those gone are marked deleted (or dropped if they never reached the cloud). `copy: 'cloud'` adds what
 * a vault copy of the pool holds (a rebuild from the cloud): points are marked uploaded, packs indexed in
 * the cloud; nothing local is touched.
 */
export async function syncCatalog(pool: Pool, catalog: Catalog, options: { serverId?: string | null; copy?: 'disk' | 'cloud' } = {}): Promise<SyncResult> {
  if (options.copy === 'cloud') return syncFromCloud(pool, catalog, options.serverId ?? null);
  const result: SyncResult = { addedSegments: 0, removedSegments: 0, addedPoints: 0, removedPoints: 0, unreadable: [] };
  if (catalog.getMeta('pool_id') !== pool.description.id) {
    catalog.clearPoolCache();
    catalog.setMeta('pool_id', pool.description.id);
  }

  // Segments superseded by a segment read earlier (prune writes the new one, then deletes these; a crash
  // in between leaves both): remembered, so a superseded segment still in the pool is never recorded again.
  const inPool = new Set(await pool.listIndexIds());
  const inCatalog = new Set(catalog.indexSegmentIds());
  const remembered = catalog.getState<string[]>(SUPERSEDED_KEY) ?? [];
  const superseded = new Set<string>(remembered);
  for (const id of inPool) {
    if (inCatalog.has(id) || superseded.has(id)) continue;
    try {
      const seg = await pool.readIndex(id);
      for (const s of seg.supersedes) superseded.add(s.toString('hex'));
      catalog.addIndexSegment(
        id,
        seg.packs.map((p) => ({ id: p.id.toString('hex'), size: p.size, entries: p.entries })),
      );
      result.addedSegments++;
    } catch (err) {
      result.unreadable.push(`index/${id}: ${(err as Error).message}`);
    }
  }
  // Listed again: a segment recorded above may be superseded by one read after it.
  for (const id of catalog.indexSegmentIds()) {
    if (!inPool.has(id) || superseded.has(id)) {
      catalog.removeIndexSegment(id);
      result.removedSegments++;
    }
  }
  const stillPresent = [...superseded].filter((id) => inPool.has(id)).sort();
  if (JSON.stringify(stillPresent) !== JSON.stringify([...remembered].sort())) catalog.setState(SUPERSEDED_KEY, stillPresent);

  const manifests = new Set(await pool.listManifestIds());
  const known = new Map(catalog.recoveryPoints().map((r) => [r.id, r]));
  for (const id of manifests) {
    const row = known.get(id);
    if (row && row.diskState === 'present') continue;
    try {
      const m = await pool.readManifest(id);
      catalog.addRecoveryPoint({
        ...recoveryPointRow(id, m),
        diskState: 'present',
        serverId: options.serverId ?? null,
      });
      result.addedPoints++;
    } catch (err) {
      result.unreadable.push(`snapshots/${id}: ${(err as Error).message}`);
    }
  }
  for (const [id, row] of known) {
    if (manifests.has(id) || row.diskState !== 'present') continue;
    if (row.cloudState === 'none') catalog.removeRecoveryPoint(id);
    else catalog.setRecoveryPointState(id, { disk: 'deleted' });
    result.removedPoints++;
  }
  return result;
}

async function syncFromCloud(pool: Pool, catalog: Catalog, serverId: string | null): Promise<SyncResult> {
  const result: SyncResult = { addedSegments: 0, removedSegments: 0, addedPoints: 0, removedPoints: 0, unreadable: [] };
  if (catalog.getMeta('pool_id') !== pool.description.id) {
    catalog.clearPoolCache();
    catalog.setMeta('pool_id', pool.description.id);
  }
  const segments: { id: string; packs: import('./index-segment.js').IndexedPack[]; supersedes: Buffer[] }[] = [];
  const superseded = new Set<string>();
  for (const id of await pool.listIndexIds()) {
    try {
      const seg = await pool.readIndex(id);
      segments.push({ id: `cloud:${id}`, packs: seg.packs, supersedes: seg.supersedes });
      for (const s of seg.supersedes) superseded.add(s.toString('hex'));
    } catch (err) {
      result.unreadable.push(`vault index/${id}: ${(err as Error).message}`);
    }
  }
  for (const seg of segments) {
    if (superseded.has(seg.id.slice('cloud:'.length))) continue;
    const known = new Set(catalog.packs().map((p) => p.id));
    const fresh = seg.packs.filter((p) => !known.has(p.id.toString('hex')));
    catalog.addIndexSegment(
      seg.id,
      fresh.map((p) => ({ id: p.id.toString('hex'), size: p.size, entries: p.entries })),
    );
    catalog.transaction(() => {
      for (const p of seg.packs) {
        const id = p.id.toString('hex');
        catalog.setPackCloudState(id, 'indexed', null);
        if (!known.has(id)) catalog.setPackLocalState(id, 'missing');
      }
    });
    result.addedSegments++;
  }
  const rows = new Map(catalog.recoveryPoints().map((r) => [r.id, r]));
  for (const id of await pool.listManifestIds()) {
    const row = rows.get(id);
    if (row) {
      if (row.cloudState !== 'uploaded') catalog.setRecoveryPointState(id, { cloud: 'uploaded' });
      continue;
    }
    try {
      const m = await pool.readManifest(id);
      catalog.addRecoveryPoint({
        ...recoveryPointRow(id, m),
        diskState: 'absent',
        cloudState: 'uploaded',
        serverId,
      });
      result.addedPoints++;
    } catch (err) {
      result.unreadable.push(`vault snapshots/${id}: ${(err as Error).message}`);
    }
  }
  return result;
}

/** The catalog's row for a recovery point, from its manifest. */
function recoveryPointRow(id: string, m: Manifest) {
  return {
    id,
    group: m.group,
    source: m.source,
    sourceType: m.sourceType,
    host: m.host,
    time: Date.parse(m.time),
    tree: m.tree,
    parent: m.parent,
    stats: { ...m.stats },
    warnings: m.warnings,
  };
}
