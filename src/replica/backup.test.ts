import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, lstat, mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bytes, text, writeTree } from '../../test/helpers/fs-tree.js';
import { Catalog } from '../catalog/catalog.js';
import { systemClock } from '../clock.js';
import { MemoryStore } from '../store/memory-store.js';
import { listAll } from '../store/object-store.js';
import { BlobIdSet } from '../catalog/blob-id-set.js';
import { backupDirectory, startTreeWalk } from './backup.js';
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

  it('keeps the file-metadata cache exact across backups: unchanged files skipped, changed and new ones read, gone ones dropped', async () => {
    const src = path.join(dir, 'src');
    await writeTree(src, {
      keep: { a: text(1, 5000), b: bytes(2, 30_000) },
      change: { c: text(3, 4000), d: text(4, 4000) },
      gone: { e: text(5, 100), sub: { f: text(6, 100) } },
      top: text(7, 10),
      first: bytes(8, 20_000),
      second: { hardlink: 'first' },
      becomesDir: text(9, 10),
    } as never);
    const { pool, catalog } = await setup();
    const key = '\u0000' + src;
    /** What the cache must hold: every regular file but later hard links, with its current metadata. */
    const expectCache = async (paths: string[]) => {
      const cache = catalog.loadFileCache(key);
      expect([...cache.keys()].sort()).toEqual([...paths].sort());
      for (const p of paths) {
        const st = await lstat(path.join(src, p), { bigint: true });
        const e = cache.get(p)!;
        expect([e.size, e.mtimeNs, e.ctimeNs, e.inode]).toEqual([Number(st.size), st.mtimeNs.toString(), st.ctimeNs.toString(), st.ino.toString()]);
      }
    };
    const run = () => backupDirectory(pool, catalog, { group: '', source: src, host: 'h', clock: systemClock, workers: 0 });

    const r1 = await run();
    expect(r1.manifest.stats.filesRead).toBe(9); // not the second hard link
    await expectCache(['keep/a', 'keep/b', 'change/c', 'change/d', 'gone/e', 'gone/sub/f', 'top', 'first', 'becomesDir']);

    await appendFile(path.join(src, 'change/c'), 'more');
    await writeFile(path.join(src, 'change/new'), 'new file');
    await unlink(path.join(src, 'change/d'));
    await rm(path.join(src, 'gone'), { recursive: true });
    await unlink(path.join(src, 'becomesDir'));
    await mkdir(path.join(src, 'becomesDir'));
    await writeFile(path.join(src, 'becomesDir/inner'), 'inner');
    const r2 = await run();
    expect(r2.manifest.stats.filesRead).toBe(3); // change/c, change/new, becomesDir/inner
    await expectCache(['keep/a', 'keep/b', 'change/c', 'change/new', 'top', 'first', 'becomesDir/inner']);

    const r3 = await run();
    expect(r3.manifest.stats.filesRead).toBe(0);
    expect(r3.manifest.tree).toBe(r2.manifest.tree);
    await expectCache(['keep/a', 'keep/b', 'change/c', 'change/new', 'top', 'first', 'becomesDir/inner']);

    // A file whose content is no longer known is read again, even with the same metadata.
    catalog.db.exec('DELETE FROM blobs');
    const r4 = await run();
    expect(r4.manifest.stats.filesRead).toBe(7);
    await expectCache(['keep/a', 'keep/b', 'change/c', 'change/new', 'top', 'first', 'becomesDir/inner']);
    catalog.close();
  });

  it('takes a dedup set or a tree walk started early only when it is still exact and of the tree backed up', async () => {
    const src = path.join(dir, 'src');
    await writeTree(src, { a: bytes(1, 300_000), sub: { b: text(2, 50_000) } } as never);
    const { pool, catalog } = await setup();
    const opts = { group: '', host: 'h', clock: systemClock, workers: 0 };
    const r1 = await backupDirectory(pool, catalog, { ...opts, source: src });
    expect(r1.manifest.stats.newBlobs).toBeGreaterThan(0);
    expect(existsSync(`${catalog.file}-known`)).toBe(true); // the set, saved for the next backup

    // The same content elsewhere: with the set loaded early and still exact, nothing is new.
    const copy = path.join(dir, 'copy');
    await writeTree(copy, { a: bytes(1, 300_000), sub: { b: text(2, 50_000) } } as never);
    const exact = { set: catalog.loadKnownBlobIds().set, generation: catalog.blobGeneration() };
    const other = path.join(dir, 'other');
    await mkdir(other);
    const otherWalk = startTreeWalk(other, [], { inProcess: true }); // of another tree: not taken
    const r2 = await backupDirectory(pool, catalog, { ...opts, source: copy, known: exact, walk: otherWalk });
    expect(r2.manifest.stats.newBlobs).toBe(0);
    expect(r2.manifest.stats.files).toBe(2);

    // An early set whose generation has passed is not used (an empty one here: it would store everything again).
    const stale = { set: new BlobIdSet(), generation: 'not the generation' };
    const r3 = await backupDirectory(pool, catalog, { ...opts, source: copy, known: stale, walk: startTreeWalk(copy, [], { inProcess: true }) });
    expect(r3.manifest.stats.newBlobs).toBe(0);
    expect(r3.manifest.stats.files).toBe(2);
    // …whereas one of the current generation is trusted as is (hence the generation's care): every
    // blob is stored again, the new file's too.
    await writeFile(path.join(copy, 'c'), 'a new file');
    const empty = { set: new BlobIdSet(), generation: catalog.blobGeneration() };
    const r4 = await backupDirectory(pool, catalog, { ...opts, source: copy, known: empty });
    expect(r4.manifest.stats.newBlobs).toBe(r1.manifest.stats.newBlobs + 1);
    catalog.close();
  });

  it('writes an index segment once enough blobs wait for one, however few packs hold them', async () => {
    const src = path.join(dir, 'src');
    const spec: Record<string, unknown> = {};
    for (let f = 0; f < 120; f++) spec[`s${String(f).padStart(3, '0')}`] = bytes(f, 20_000 + f);
    await writeTree(src, spec as never);
    const { pool, catalog } = await setup();
    // ~25 files fill a pack (512 KiB target): a few packs, far fewer than 64, so only the blob count triggers segments.
    const r = await backupDirectory(pool, catalog, { group: '', source: src, host: 'h', clock: systemClock, indexEveryBlobs: 25 });
    expect(r.manifest.stats.files).toBe(120);
    const segments = await pool.listIndexIds();
    expect(segments.length).toBeGreaterThanOrEqual(4);
    // Every blob is indexed once, and everything reads back.
    const indexed: string[] = [];
    for (const id of segments) for (const p of (await pool.readIndex(id)).packs) for (const e of p.entries) indexed.push(e.id.toString('hex'));
    expect(new Set(indexed).size).toBe(indexed.length);
    expect(indexed.length).toBe(r.manifest.stats.newBlobs + 1); // and the one tree
    expect(r.manifest.stats.packs).toBeGreaterThan(0);
    expect(r.manifest.stats.packs).toBe((await listAll(pool.store, 'packs/')).length);
    const reader = new BlobReader(pool.store, pool.keys, catalog.blobLookup());
    expect(await reader.read(r.manifest.tree)).toBeInstanceOf(Buffer);
    catalog.close();
  });
});
