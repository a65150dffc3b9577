// Brings the catalog in line with what a pool holds: index segments and recovery points. The pool is
// the truth; the catalog is its cache. `catalog rebuild` is clear + sync.
import type { Catalog } from '../catalog/catalog.js';
import type { Pool } from './pool.js';

export interface SyncResult {
  addedSegments: number;
  removedSegments: number;
  addedPoints: number;
  removedPoints: number;
  /** Objects that could not be read (damaged); `check` reports them in full. */
  unreadable: string[];
}

export async function syncCatalog(pool: Pool, catalog: Catalog, options: { serverId?: string | null } = {}): Promise<SyncResult> {
  const result: SyncResult = { addedSegments: 0, removedSegments: 0, addedPoints: 0, removedPoints: 0, unreadable: [] };
  if (catalog.getMeta('pool_id') !== pool.description.id) {
    catalog.clearPoolCache();
    catalog.setMeta('pool_id', pool.description.id);
  }

  const inPool = new Set(await pool.listIndexIds());
  const inCatalog = new Set(catalog.indexSegmentIds());
  const superseded = new Set<string>();
  for (const id of inPool) {
    if (inCatalog.has(id)) continue;
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
  for (const id of inCatalog) {
    if (!inPool.has(id) || superseded.has(id)) {
      catalog.removeIndexSegment(id);
      result.removedSegments++;
    }
  }

  const manifests = new Set(await pool.listManifestIds());
  const known = new Map(catalog.recoveryPoints().map((r) => [r.id, r]));
  for (const id of manifests) {
    const row = known.get(id);
    if (row && row.diskState === 'present') continue;
    try {
      const m = await pool.readManifest(id);
      catalog.addRecoveryPoint({
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
