import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bytes, digestTree, writeTree } from '../../test/helpers/fs-tree.js';
import { Catalog } from '../catalog/catalog.js';
import { systemClock } from '../clock.js';
import { DirStore } from '../store/dir-store.js';
import type { StoreOptions } from '../store/object-store.js';
import { backupDirectory } from './backup.js';
import { BlobReader } from './blob-reader.js';
import { syncCatalog } from './catalog-sync.js';
import { checkPool } from './check.js';
import { Pool } from './pool.js';
import { prunePool } from './prune.js';
import { restoreTree } from './restore.js';

const PASS = 'a passphrase of sufficient length';
const FAST = { N: 2 ** 10, r: 8, p: 1 };
const SMALL_CHUNKS = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

/** A directory store whose deletes of packs fail while `failPackDeletes` is set: a crash in the middle of prune's deletions. */
class CrashingStore extends DirStore {
  failPackDeletes = false;
  override async delete(key: string, options?: StoreOptions): Promise<void> {
    if (this.failPackDeletes && key.startsWith('packs/')) throw new Error('simulated crash');
    return super.delete(key, options);
  }
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'strata-prune-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function restoreAndCompare(pool: Pool, catalog: Catalog, tree: string, expected: string, name: string): Promise<void> {
  const target = path.join(dir, name);
  await restoreTree(new BlobReader(pool.store, pool.keys, catalog.blobLookup()), tree, { target, onConflict: 'error' });
  expect(await digestTree(target)).toEqual(await digestTree(expected));
}

describe('prunePool', () => {
  it('is crash-safe: stopped after writing the superseding segment, the pool restores (even from a rebuilt catalog) and the next prune finishes', async () => {
    const store = new CrashingStore(path.join(dir, 'pool'));
    const pool = await Pool.init(store, PASS, { now: Date.now(), scrypt: FAST, chunker: SMALL_CHUNKS, packTargetBytes: 4 * 1024 * 1024 });
    const catalog = Catalog.open(path.join(dir, 'state', 'catalog.db'));
    await syncCatalog(pool, catalog);
    const src = path.join(dir, 'src');
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 12; i++) files[`f${i}.bin`] = bytes(i + 1, 300_000);
    await writeTree(src, files);
    const opts = { group: 'g', source: src, host: 'h', clock: systemClock };
    const rp0 = await backupDirectory(pool, catalog, opts);
    for (let i = 2; i < 12; i++) await rm(path.join(src, `f${i}.bin`));
    const rp1 = await backupDirectory(pool, catalog, opts);

    // Dry run: a plan, nothing changed.
    const dry = await prunePool(pool, { deleteManifests: [rp0.id], dryRun: true, isOldUnreferenced: async () => true });
    expect(dry.packsRepacked.length).toBeGreaterThanOrEqual(1);
    expect((await pool.listManifestIds()).sort()).toEqual([rp0.id, rp1.id].sort());

    store.failPackDeletes = true;
    await expect(prunePool(pool, { deleteManifests: [rp0.id], isOldUnreferenced: async () => true })).rejects.toThrow('simulated crash');
    store.failPackDeletes = false;

    await syncCatalog(pool, catalog);
    await restoreAndCompare(pool, catalog, rp1.manifest.tree, src, 'r1');
    const check = await checkPool(pool, { readData: true });
    expect(check.ok).toBe(true);
    expect(check.unreferencedPacks.length).toBeGreaterThanOrEqual(1); // the repacked originals, still there

    // A catalog rebuilt from a pool holding both the old and the superseding segment.
    const fresh = Catalog.open(path.join(dir, 'state2', 'catalog.db'));
    await syncCatalog(pool, fresh);
    await restoreAndCompare(pool, fresh, rp1.manifest.tree, src, 'r2');

    // The next prune removes what the stopped one left.
    const next = await prunePool(pool, { deleteManifests: [], isOldUnreferenced: async () => false });
    expect(next.unreferencedPacksDeleted.length).toBe(check.unreferencedPacks.length);
    expect(next.indexSegmentsDeleted.length).toBeGreaterThanOrEqual(1);
    await syncCatalog(pool, catalog);
    const after = await checkPool(pool, { readData: true });
    expect(after.ok).toBe(true);
    expect(after.unreferencedPacks).toEqual([]);
    await restoreAndCompare(pool, catalog, rp1.manifest.tree, src, 'r3');
    catalog.close();
    fresh.close();
  });

  it('stops before changing anything when a recovery point cannot be read', async () => {
    const store = new DirStore(path.join(dir, 'pool'));
    const pool = await Pool.init(store, PASS, { now: Date.now(), scrypt: FAST, chunker: SMALL_CHUNKS });
    const catalog = Catalog.open(path.join(dir, 'state', 'catalog.db'));
    await syncCatalog(pool, catalog);
    const src = path.join(dir, 'src');
    await writeTree(src, { 'a.bin': bytes(1, 100_000) });
    const rp = await backupDirectory(pool, catalog, { group: 'g', source: src, host: 'h', clock: systemClock });
    await store.put(`snapshots/${'0'.repeat(64)}`, Buffer.from('not a sealed manifest'));
    const before = (await pool.listManifestIds()).sort();
    await expect(prunePool(pool, { deleteManifests: [rp.id], isOldUnreferenced: async () => true })).rejects.toMatchObject({ code: 'STRATA_PRUNE_UNSAFE' });
    expect((await pool.listManifestIds()).sort()).toEqual(before);
    catalog.close();
  });
});
