import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bytes, text, writeTree } from '../../test/helpers/fs-tree.js';
import { Catalog } from '../catalog/catalog.js';
import { systemClock } from '../clock.js';
import { MemoryStore } from '../store/memory-store.js';
import { listAll } from '../store/object-store.js';
import { backupDirectory } from './backup.js';
import { BlobReader } from './blob-reader.js';
import { syncCatalog } from './catalog-sync.js';
import { Pool, SNAPSHOTS_PREFIX } from './pool.js';

const SMALL_CHUNKS = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'strata-backup-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function setup() {
  const pool = await Pool.init(new MemoryStore(), 'a passphrase of sufficient length', { now: Date.now(), scrypt: { N: 1024, r: 8, p: 1 }, chunker: SMALL_CHUNKS, packTargetBytes: 512 * 1024 });
  const catalog = Catalog.open(path.join(dir, 'state', 'catalog.db'));
  await syncCatalog(pool, catalog);
  return { pool, catalog };
}

describe('backup pipeline', () => {
  it('produces the same trees whatever the number of workers, with warnings in walk order', async () => {
    const src = path.join(dir, 'src');
    const spec: Record<string, unknown> = {};
    for (let d = 0; d < 6; d++) {
      const sub: Record<string, unknown> = {};
      for (let f = 0; f < 40; f++) sub[`f${String(f).padStart(2, '0')}`] = f % 4 === 0 ? bytes(d * 100 + f, 40_000 + f) : text(d * 100 + f, 3000 + f);
      spec[`d${d}`] = sub;
    }
    spec['big.bin'] = bytes(999, 2_000_000);
    spec['first'] = bytes(5, 70_000);
    spec['second'] = { hardlink: 'first' };
    await writeTree(src, spec as never);
    for (const name of ['d1/pipe', 'd4/pipe', 'd0/pipe']) execFileSync('mkfifo', [path.join(src, name)]);
    const { pool, catalog } = await setup();
    const trees = new Set<string>();
    for (const workers of [0, 1, 3]) {
      const other = Catalog.open(path.join(dir, `state-${workers}`, 'catalog.db'));
      await syncCatalog(pool, other);
      const r = await backupDirectory(pool, other, { group: '', source: src, host: 'h', clock: systemClock, workers });
      trees.add(r.manifest.tree);
      expect(r.manifest.warnings).toEqual(['d0/pipe: skipped: a FIFO cannot be backed up', 'd1/pipe: skipped: a FIFO cannot be backed up', 'd4/pipe: skipped: a FIFO cannot be backed up']);
      expect(r.manifest.stats.files).toBe(6 * 40 + 3);
      other.close();
    }
    expect(trees.size).toBe(1);
    // The hard link points at the first link seen, and shares its content.
    const reader = new BlobReader(pool.store, pool.keys, catalog.blobLookup());
    await syncCatalog(pool, catalog);
    const root = await reader.tree([...trees][0]!);
    const first = root.nodes.find((n) => n.name === 'first')!;
    const second = root.nodes.find((n) => n.name === 'second')!;
    expect(second.linkGroup).toBe('first');
    expect(first.linkGroup).toBe('first');
    expect(second.content).toEqual(first.content);
    catalog.close();
  });

  it('an abort stops the backup: it rejects with the reason and writes no recovery point', async () => {
    const src = path.join(dir, 'src');
    const spec: Record<string, Buffer> = {};
    for (let i = 0; i < 30; i++) spec[`f${i}`] = bytes(i, 300_000);
    await writeTree(src, spec);
    const { pool, catalog } = await setup();
    const ac = new AbortController();
    const reason = new Error('cancelled by the operator');
    const run = backupDirectory(pool, catalog, {
      group: '',
      source: src,
      host: 'h',
      clock: systemClock,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.bytes > 1_000_000) ac.abort(reason);
      },
    });
    await expect(run).rejects.toBe(reason);
    expect(await listAll(pool.store, SNAPSHOTS_PREFIX)).toEqual([]);
    // The next backup is complete.
    await writeFile(path.join(src, 'late'), 'x');
    const done = await backupDirectory(pool, catalog, { group: '', source: src, host: 'h', clock: systemClock });
    expect(done.manifest.stats.files).toBe(31);
    catalog.close();
  });
});
