import { mkdtemp, rm, writeFile, readFile, readdir, realpath, chmod, chown, lstat, lutimes, symlink, utimes } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bytes, digestTree, text, writeTree } from '../../test/helpers/fs-tree.js';
import { Catalog } from '../catalog/catalog.js';
import { systemClock } from '../clock.js';
import { DirStore } from '../store/dir-store.js';
import { backupDirectory } from './backup.js';
import { BlobReader } from './blob-reader.js';
import { syncCatalog } from './catalog-sync.js';
import { checkPool } from './check.js';
import { packKey, Pool } from './pool.js';
import { restoreTree } from './restore.js';
import { utimeSeconds } from './restore-target.js';

const PASS = 'a passphrase of sufficient length';
const FAST = { N: 2 ** 10, r: 8, p: 1 };
const SMALL_CHUNKS = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'strata-replica-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function setup() {
  const store = new DirStore(path.join(dir, 'pool'));
  const pool = await Pool.init(store, PASS, { now: Date.now(), scrypt: FAST, chunker: SMALL_CHUNKS, packTargetBytes: 1024 * 1024 });
  const catalog = Catalog.open(path.join(dir, 'state', 'catalog.db'));
  await syncCatalog(pool, catalog);
  return { store, pool, catalog };
}

describe('backup, restore and check on a directory pool', () => {
  it('round-trips a tree with every kind of file, and dedups a second run', async () => {
    const src = path.join(dir, 'src');
    await writeTree(src, {
      'empty.txt': '',
      'hello.txt': 'hello world\n',
      'big.bin': bytes(1, 3_000_000),
      'log.txt': text(2, 500_000),
      sub: { deeper: { 'a.txt': 'a', 'b.bin': bytes(3, 70_000) }, 'link-to-hello': { symlink: '../hello.txt' } },
      'hard-1': bytes(4, 10_000),
      'hard-2': { hardlink: 'hard-1' },
      emptydir: {},
    });
    await chmod(path.join(src, 'hello.txt'), 0o640);
    await utimes(path.join(src, 'log.txt'), 1_600_000_000, 1_600_000_000.5);
    const { pool, catalog } = await setup();
    const first = await backupDirectory(pool, catalog, { group: '', source: src, host: hostname(), clock: systemClock });
    expect(first.manifest.stats.files).toBe(8);
    expect(first.manifest.stats.symlinks).toBe(1);
    expect(first.manifest.warnings).toEqual([]);

    const second = await backupDirectory(pool, catalog, { group: '', source: src, host: hostname(), clock: systemClock });
    expect(second.manifest.stats.newBlobs).toBe(0);
    expect(second.manifest.stats.filesRead).toBe(0);
    expect(second.manifest.tree).toBe(first.manifest.tree);

    const reader = new BlobReader(pool.store, pool.keys, catalog.blobLookup());
    const target = path.join(dir, 'restored');
    await restoreTree(reader, first.manifest.tree, { target, onConflict: 'error' });
    expect(await digestTree(target)).toEqual(await digestTree(src));

    const report = await checkPool(pool, { readData: true });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);

    // One item.
    const itemTarget = path.join(dir, 'item');
    await restoreTree(reader, first.manifest.tree, { target: itemTarget, item: 'sub/deeper', onConflict: 'error' });
    expect(await readFile(path.join(itemTarget, 'deeper', 'a.txt'), 'utf8')).toBe('a');

    // Conflicts.
    await expect(restoreTree(reader, first.manifest.tree, { target, onConflict: 'error' })).rejects.toMatchObject({ code: 'STRATA_RESTORE_CONFLICT' });
    await writeFile(path.join(target, 'hello.txt'), 'changed');
    const copy = await restoreTree(reader, first.manifest.tree, { target, onConflict: 'copy' });
    expect(copy.renamed.length).toBeGreaterThan(0);
    expect(await readFile(path.join(target, 'hello.txt'), 'utf8')).toBe('changed');
    expect(await readFile(path.join(target, 'hello.txt.restored'), 'utf8')).toBe('hello world\n');
    await restoreTree(reader, first.manifest.tree, { target, item: 'hello.txt', onConflict: 'overwrite' });
    expect(await readFile(path.join(target, 'hello.txt'), 'utf8')).toBe('hello world\n');
  });

  it('restores thousands of files over many packs (moved into place while later packs are restored), with every directory’s metadata', async () => {
    const src = path.join(dir, 'src');
    const tree: Record<string, unknown> = {};
    for (let d = 0; d < 30; d++) {
      const files: Record<string, unknown> = { [`big-${d}.bin`]: bytes(100 + d, 150_000), 'empty': '' };
      for (let f = 0; f < 60; f++) files[`f${f}.txt`] = text(1000 * d + f, 200 + 37 * f);
      tree[`d${d}`] = d % 3 === 0 ? { inner: files } : files;
    }
    await writeTree(src, tree as Parameters<typeof writeTree>[1]);
    await chmod(path.join(src, 'd3'), 0o750);
    await utimes(path.join(src, 'd3', 'inner'), 1_500_000_000, 1_500_000_000);
    await utimes(path.join(src, 'd4'), 1_400_000_000, 1_400_000_000);
    const { pool, catalog } = await setup();
    const rp = await backupDirectory(pool, catalog, { group: '', source: src, host: hostname(), clock: systemClock });
    expect(rp.manifest.stats.files).toBe(30 * 62);
    expect(catalog.packs().length).toBeGreaterThan(4);

    const target = path.join(dir, 'restored');
    const seen: number[] = [];
    const result = await restoreTree(new BlobReader(pool.store, pool.keys, catalog.blobLookup({ preloaded: catalog.blobIndexSnapshot() })), rp.manifest.tree, {
      target,
      onConflict: 'error',
      onProgress: (p) => seen.push(p.files),
    });
    expect(result.files).toBe(30 * 62);
    expect(seen.at(-1)).toBe(30 * 62);
    expect(await digestTree(target)).toEqual(await digestTree(src));

    // Stopped once content is being written (as Ctrl-C does through the CLI): the files in place are
    // whole, the staging directory is gone, and a second run with 'skip' finishes the job.
    const stopped = path.join(dir, 'stopped');
    const ac = new AbortController();
    const reason = new Error('stop here');
    const run = restoreTree(new BlobReader(pool.store, pool.keys, catalog.blobLookup()), rp.manifest.tree, {
      target: stopped,
      onConflict: 'error',
      signal: ac.signal,
      onProgress: (p) => void (p.bytes > 0 && ac.abort(reason)),
    });
    await expect(run).rejects.toBe(reason);
    const names = await readdir(stopped, { recursive: true });
    expect(names.some((n) => n.startsWith('.strata-restore-'))).toBe(false);
    const want = await digestTree(src, { mtimes: false });
    const partial = await digestTree(stopped, { mtimes: false });
    expect(Object.values(partial).filter((e) => e.type === 'file').length).toBeLessThan(30 * 62);
    for (const [rel, e] of Object.entries(partial)) if (e.type === 'file') expect(e, rel).toEqual(want[rel]);
    // What a killed restore (no chance to clean up) leaves is named in a warning, and left alone.
    await writeTree(path.join(stopped, '.strata-restore-0123456789abcdef'), { '7': 'half' });
    const finished = await restoreTree(new BlobReader(pool.store, pool.keys, catalog.blobLookup()), rp.manifest.tree, { target: stopped, onConflict: 'skip' });
    expect(finished.warnings).toEqual([`${path.join(await realpath(stopped), '.strata-restore-0123456789abcdef')} was left by a restore that was killed (unfinished content only); delete it`]);
    await rm(path.join(stopped, '.strata-restore-0123456789abcdef'), { recursive: true });
    expect(await digestTree(stopped)).toEqual(await digestTree(src));
  });

  it('restores every file’s mode and owner exactly, whether it is created with them or given them after, under any umask', async () => {
    const src = path.join(dir, 'src');
    const modes = [0o644, 0o600, 0o755, 0o640, 0o400, 0o444, 0o666, 0o777, 0o000, 0o4755, 0o2750, 0o1644];
    const tree: Record<string, unknown> = {};
    // Small files are written whole by one blob; big ones in pieces (created first, finished after).
    modes.forEach((m, i) => {
      tree[`small-${m.toString(8)}`] = text(i, 300);
      tree[`big-${m.toString(8)}`] = bytes(50 + i, 600_000);
      tree[`empty-${m.toString(8)}`] = '';
    });
    await writeTree(src, tree as Parameters<typeof writeTree>[1]);
    for (const m of modes) for (const kind of ['small', 'big', 'empty']) await chmod(path.join(src, `${kind}-${m.toString(8)}`), m);
    const root = process.getuid?.() === 0;
    if (root) {
      await chown(path.join(src, 'small-644'), 1234, 5678);
      await chown(path.join(src, 'big-640'), 0, 5678);
      await chmod(path.join(src, 'big-640'), 0o640);
    }
    const { pool, catalog } = await setup();
    const rp = await backupDirectory(pool, catalog, { group: '', source: src, host: hostname(), clock: systemClock });
    const expected = await digestTree(src);
    const before = process.umask();
    try {
      for (const umask of [0o022, 0o077, 0o000, 0o277]) {
        process.umask(umask);
        const target = path.join(dir, `restored-${umask.toString(8)}`);
        const result = await restoreTree(new BlobReader(pool.store, pool.keys, catalog.blobLookup()), rp.manifest.tree, { target, onConflict: 'error' });
        expect(result.files).toBe(modes.length * 3);
        expect(result.warnings).toEqual([]);
        expect(await digestTree(target), `umask ${umask.toString(8)}`).toEqual(expected);
      }
    } finally {
      process.umask(before);
    }
  });

  it('restores files’, directories’ and symlinks’ modification times to the microsecond (all Node can set)', async () => {
    const src = path.join(dir, 'src');
    const tree: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) tree[`d${i}`] = { [`f${i}`]: text(i, 100), [`big${i}`]: bytes(i, i % 4 === 0 ? 400_000 : 10) };
    await writeTree(src, tree as Parameters<typeof writeTree>[1]);
    await symlink('d0/f0', path.join(src, 'link'));
    // Times with every microsecond digit: set exactly (the same conversion restore uses), then read back.
    const paths = Object.keys(tree).flatMap((d, i) => [path.join(src, d, `f${i}`), path.join(src, d, `big${i}`), path.join(src, d)]);
    for (let i = 0; i < paths.length; i++) {
      const t = utimeSeconds(String(1_796_616_633_970_723_000n + BigInt(i) * 1_234_567_891_000n));
      await utimes(paths[i]!, t, t);
    }
    await lutimes(path.join(src, 'link'), utimeSeconds('1700000000123456000'), utimeSeconds('1700000000123456000'));
    const times = async (root: string) => {
      const out: Record<string, bigint> = {};
      for (const p of [...paths, path.join(src, 'link')]) out[path.relative(src, p)] = (await lstat(path.join(root, path.relative(src, p)), { bigint: true })).mtimeNs;
      return out;
    };
    const expected = await times(src);
    expect(Object.values(expected).every((ns) => ns % 1000n === 0n)).toBe(true);
    const { pool, catalog } = await setup();
    const rp = await backupDirectory(pool, catalog, { group: '', source: src, host: hostname(), clock: systemClock });
    const target = path.join(dir, 'restored');
    await restoreTree(new BlobReader(pool.store, pool.keys, catalog.blobLookup()), rp.manifest.tree, { target, onConflict: 'error' });
    expect(await times(target)).toEqual(expected);
  });

  it('check names a damaged file in every recovery point that holds it, and walks a shared whole subtree once', async () => {
    const src = path.join(dir, 'src');
    await writeTree(src, { shared: { big: bytes(11, 200_000), deeper: { small: text(12, 3000) } }, own: text(13, 100) });
    const { store, pool, catalog } = await setup();
    const run = () => backupDirectory(pool, catalog, { group: '', source: src, host: 'h', clock: systemClock });
    const first = await run();
    await writeFile(path.join(src, 'own'), 'changed');
    const second = await run();
    expect(second.manifest.tree).not.toBe(first.manifest.tree);
    const clean = await checkPool(pool, { readData: true });
    expect(clean.ok).toBe(true);

    // Damage the first chunk of shared/big, which both recovery points hold.
    const reader = new BlobReader(pool.store, pool.keys, catalog.blobLookup());
    const root = await reader.tree(first.manifest.tree);
    const shared = await reader.tree(root.nodes.find((n) => n.name === 'shared')!.subtree!);
    const chunk = catalog.lookupBlob(Buffer.from(shared.nodes.find((n) => n.name === 'big')!.content![0]!, 'hex'))!;
    const file = store.path(packKey(chunk.packId));
    const data = await readFile(file);
    data[chunk.offset + 20]! ^= 0xff;
    await chmod(file, 0o600);
    await writeFile(file, data);

    const report = await checkPool(pool, { readData: true });
    expect(report.ok).toBe(false);
    const affected = report.problems.flatMap((p) => p.affected);
    for (const m of [first, second]) expect(affected).toContain(`${m.id.slice(0, 12)}: shared/big`);
    expect(affected.some((a) => a.endsWith('shared/deeper/small') || a.endsWith(': own'))).toBe(false);
  });

  it('a restore stops before writing anything when a tree fails verification, and names it', async () => {
    const src = path.join(dir, 'src');
    await writeTree(src, { a: { b: { 'c.txt': 'c' } }, 'd.txt': 'd' });
    const { store, pool, catalog } = await setup();
    const rp = await backupDirectory(pool, catalog, { group: '', source: src, host: 'h', clock: systemClock });
    const reader = new BlobReader(pool.store, pool.keys, catalog.blobLookup());
    const a = await reader.tree((await reader.tree(rp.manifest.tree)).nodes.find((n) => n.name === 'a')!.subtree!);
    const b = catalog.lookupBlob(Buffer.from(a.nodes[0]!.subtree!, 'hex'))!; // the tree of a/b, read on a worker
    const file = store.path(packKey(b.packId));
    const data = await readFile(file);
    data[b.offset + 20]! ^= 0xff;
    await chmod(file, 0o600);
    await writeFile(file, data);

    const target = path.join(dir, 'restored');
    await expect(restoreTree(new BlobReader(pool.store, pool.keys, catalog.blobLookup()), rp.manifest.tree, { target, onConflict: 'error' })).rejects.toThrow(
      new RegExp(`blob ${b.id.toString('hex').slice(0, 16)} .*failed authentication`),
    );
    expect(await readdir(target).catch(() => [])).toEqual([]);
  });

  it('check --read-data reports a pack whose header disagrees with the index in any field (here a length after decompression)', async () => {
    const src = path.join(dir, 'src');
    await writeTree(src, { a: text(21, 50_000), b: bytes(22, 30_000) });
    const { store, pool, catalog } = await setup();
    await backupDirectory(pool, catalog, { group: '', source: src, host: 'h', clock: systemClock });
    expect((await checkPool(pool, { readData: true })).ok).toBe(true);

    // An index that says one blob decompresses to a byte more than its pack's header does.
    const [indexId] = await pool.listIndexIds();
    const seg = await pool.readIndex(indexId!);
    const pack = seg.packs.find((p) => p.entries.length > 0)!;
    pack.entries[0]!.rawLength += 1;
    await pool.writeIndex(seg);
    await store.delete(`index/${indexId}`);

    const report = await checkPool(pool, { readData: true });
    expect(report.ok).toBe(false);
    expect(report.problems).toContainEqual(expect.objectContaining({ kind: 'pack', object: pack.id.toString('hex'), problem: 'its header does not match the index' }));
    // Without reading the data the index alone is consistent: nothing to see.
    expect((await checkPool(pool)).problems.filter((p) => p.object === pack.id.toString('hex'))).toEqual([]);
  });

  it('stores only the changed chunks after an insert in the middle of a big file', async () => {
    const src = path.join(dir, 'src');
    const data = bytes(9, 4_000_000);
    await writeTree(src, { 'big.bin': data });
    const { pool, catalog } = await setup();
    await backupDirectory(pool, catalog, { group: '', source: src, host: 'h', clock: systemClock });
    await writeFile(path.join(src, 'big.bin'), Buffer.concat([data.subarray(0, 2_000_000), Buffer.from('a small insert'), data.subarray(2_000_000)]));
    const second = await backupDirectory(pool, catalog, { group: '', source: src, host: 'h', clock: systemClock });
    expect(second.manifest.stats.bytesRead).toBe(4_000_014);
    expect(second.manifest.stats.newBytes).toBeLessThan(3 * SMALL_CHUNKS.max);
    expect(second.manifest.stats.newBlobs).toBeLessThanOrEqual(3);
  });

  it('reopens with the passphrase, refuses a wrong one, and rebuilds the catalog from the pool', async () => {
    const src = path.join(dir, 'src');
    await writeTree(src, { 'a.txt': 'aaa', b: { 'c.txt': 'ccc' } });
    const { pool, catalog } = await setup();
    const rp = await backupDirectory(pool, catalog, { group: 'g', source: src, host: 'h', clock: systemClock });
    await expect(Pool.open(pool.store, 'not the right passphrase')).rejects.toMatchObject({ code: 'STRATA_PASSPHRASE_WRONG' });
    const reopened = await Pool.open(pool.store, PASS);
    const fresh = Catalog.open(path.join(dir, 'state2', 'catalog.db'));
    const sync = await syncCatalog(reopened, fresh);
    expect(sync.addedPoints).toBe(1);
    expect(fresh.findRecoveryPoint('latest').id).toBe(rp.id);
    expect(fresh.loadKnownBlobIds().set.size).toBe(catalog.loadKnownBlobIds().set.size);
  });
});
