// End-to-end: the real CLI against real directories and a real SQLite catalog.
import { execFileSync } from 'node:child_process';
import { chmod, chown, lstat, mkdir, readFile, readdir, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bytes, digestTree, text, writeTree } from '../helpers/fs-tree.js';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, snapshotDir, type Sandbox } from '../helpers/cli.js';

let sb: Sandbox;
let azurite: Azurite;
beforeAll(async () => {
  azurite = await startAzurite();
});
afterAll(async () => {
  await azurite.stop();
});
beforeEach(async () => {
  sb = await makeSandbox({}, { vault: azurite.endpoint });
});
afterEach(async () => {
  await sb.cleanup();
});

async function generatedTree(root: string): Promise<void> {
  await writeTree(root, {
    'empty.txt': '',
    'readme.md': '# strata test tree\n',
    'photo.raw': bytes(11, 5 * 1024 * 1024 + 123),
    logs: { 'app.log': text(12, 3 * 1024 * 1024), 'old.log.tmp': 'excluded', nested: { deep: { 'x.json': '{"a":1}' } } },
    'hard-a.bin': bytes(13, 200_000),
    'hard-b.bin': { hardlink: 'hard-a.bin' },
    links: { 'to-readme': { symlink: '../readme.md' }, dangling: { symlink: '/nonexistent/target' } },
    'empty-dir': {},
  });
  await chmod(path.join(root, 'readme.md'), 0o600);
  await chmod(path.join(root, 'logs', 'nested'), 0o750);
  await chown(path.join(root, 'logs', 'app.log'), 1234, 5678).catch(() => {});
  await utimes(path.join(root, 'photo.raw'), 1_500_000_000, 1_500_000_000);
  await utimes(path.join(root, 'logs', 'nested', 'deep'), 1_400_000_000, 1_400_000_000);
  execFileSync('mkfifo', [path.join(root, 'a-fifo')]);
}

describe('strata pool end to end', () => {
  it('backs up every kind of file and restores it byte for byte with its metadata', async () => {
    const src = path.join(sb.dir, 'src');
    await generatedTree(src);
    expect((await sb.strata(['init'])).code).toBe(0);

    const backup = await sb.json(['backup', '--path', src]);
    expect(backup.state).toBe('warnings'); // the FIFO
    expect(backup.sources[0].warnings).toEqual([expect.stringMatching(/^a-fifo: skipped: a FIFO/)]);
    const rp = backup.recoveryPoint.id as string;

    const target = path.join(sb.dir, 'restored');
    const restore = await sb.json(['restore', rp, '--target', target]);
    expect(restore.files).toBe(8);
    const want = await digestTree(src);
    delete want['a-fifo'];
    const got = await digestTree(target);
    expect(got).toEqual(want);
    // Hard links are restored as links.
    expect((await stat(path.join(target, 'hard-a.bin'))).ino).toBe((await stat(path.join(target, 'hard-b.bin'))).ino);

    // One item, as <target>/<name>.
    const itemTarget = path.join(sb.dir, 'item');
    await sb.json(['restore', rp.slice(0, 8), '--item', 'logs/nested', '--target', itemTarget]);
    expect(await readdir(itemTarget)).toEqual(['nested']);
    expect(await readFile(path.join(itemTarget, 'nested', 'deep', 'x.json'), 'utf8')).toBe('{"a":1}');

    const list = await sb.json(['recovery-points']);
    expect(list.map((r: { id: string }) => r.id)).toEqual([rp]);
    const check = await sb.json(['check', '--read-data']);
    expect(check.ok).toBe(true);
  });

  it('Ctrl-C stops a restore cleanly: what is in place is whole, no staging directory stays, and --on-conflict skip finishes it', async () => {
    const src = path.join(sb.dir, 'src');
    const tree: Record<string, unknown> = { small: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`f${i}.txt`, text(500 + i, 300 + i)])) };
    for (let i = 0; i < 12; i++) tree[`big${i}.bin`] = bytes(60 + i, 9 * 1024 * 1024); // ~7 packs: the signal lands with several left
    await writeTree(src, tree as Parameters<typeof writeTree>[1]);
    await sb.strata(['init']);
    const rp = (await sb.json(['backup', '--path', src])).recoveryPoint.id;
    const target = path.join(sb.dir, 't');

    // SIGINT sent by the process itself once the first pack is restored (deterministic; as a user's Ctrl-C).
    const stopped = await sb.strata(['restore', rp, '--target', target], { env: { STRATA_CRASH_POINT: 'restore-pack#1:SIGINT' } });
    expect(stopped.code, stopped.stderr).toBe(1);
    expect(stopped.stderr).toMatch(/SIGINT: stopping the restore cleanly/);
    expect(stopped.stderr).toMatch(/strata: error STRATA_INTERRUPTED: the restore was interrupted \(SIGINT\) and stopped cleanly; .*--on-conflict skip/);
    expect((await readdir(target)).filter((n) => n.startsWith('.strata-restore-'))).toEqual([]);
    const want = await digestTree(src, { mtimes: false });
    const partial = await digestTree(target, { mtimes: false });
    expect(Object.values(partial).filter((e) => e.type === 'file').length).toBeLessThan(312);
    for (const [rel, e] of Object.entries(partial)) if (e.type === 'file') expect(e, rel).toEqual(want[rel]);

    await sb.json(['restore', rp, '--target', target, '--on-conflict', 'skip']);
    expect(await digestTree(target)).toEqual(await digestTree(src));
  });

  it('never overwrites silently: an existing file is an error unless --on-conflict says otherwise', async () => {
    const src = path.join(sb.dir, 'src');
    await writeTree(src, { 'a.txt': 'original', d: { 'b.txt': 'bee' } });
    await sb.strata(['init']);
    const rp = (await sb.json(['backup', '--path', src])).recoveryPoint.id;
    const target = path.join(sb.dir, 't');
    await writeTree(target, { 'a.txt': 'mine', d: { 'other.txt': 'keep' } });

    const refused = await sb.strata(['restore', rp, '--target', target]);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/STRATA_RESTORE_CONFLICT: .*a\.txt.*--on-conflict/);
    expect(await snapshotDir(target)).toEqual({ 'a.txt': expect.any(String), 'd/other.txt': expect.any(String) });
    expect(await readFile(path.join(target, 'a.txt'), 'utf8')).toBe('mine');

    await sb.json(['restore', rp, '--target', target, '--on-conflict', 'skip']);
    expect(await readFile(path.join(target, 'a.txt'), 'utf8')).toBe('mine');
    expect(await readFile(path.join(target, 'd', 'b.txt'), 'utf8')).toBe('bee');

    const copy = await sb.json(['restore', rp, '--target', target, '--on-conflict', 'copy']);
    expect(copy.renamed.map((r: { to: string }) => r.to)).toContain('a.txt.restored');
    expect(await readFile(path.join(target, 'a.txt.restored'), 'utf8')).toBe('original');

    await sb.json(['restore', rp, '--target', target, '--on-conflict', 'overwrite']);
    expect(await readFile(path.join(target, 'a.txt'), 'utf8')).toBe('original');
    expect(await readFile(path.join(target, 'd', 'other.txt'), 'utf8')).toBe('keep');
  });

  it('a second backup of the same tree adds no data; an insert in the middle stores only the changed chunks', async () => {
    const src = path.join(sb.dir, 'src');
    const big = bytes(21, 24 * 1024 * 1024);
    await writeTree(src, { 'big.bin': big, 'small.txt': 'small', sub: { 'log.txt': text(22, 2_000_000) } });
    await sb.strata(['init']);
    const first = await sb.json(['backup', '--path', src]);
    expect(first.recoveryPoint.stats.newBlobs).toBeGreaterThan(10);

    const again = await sb.json(['backup', '--path', src]);
    expect(again.recoveryPoint.stats.newBlobs).toBe(0);
    expect(again.recoveryPoint.stats.newBytes).toBe(0);
    expect(again.recoveryPoint.stats.bytesRead).toBe(0); // the metadata cache skipped every file

    // Same content under a new name: read again, still no new data.
    await writeFile(path.join(src, 'copy.bin'), big);
    const copied = await sb.json(['backup', '--path', src]);
    expect(copied.recoveryPoint.stats.bytesRead).toBe(big.length);
    expect(copied.recoveryPoint.stats.newBlobs).toBe(0); // data blobs: all known already

    const edited = Buffer.concat([big.subarray(0, 12_000_000), Buffer.from('a few inserted bytes'), big.subarray(12_000_000)]);
    await writeFile(path.join(src, 'big.bin'), edited);
    const incr = await sb.json(['backup', '--path', src]);
    const stats = incr.recoveryPoint.stats;
    expect(stats.bytesRead).toBe(edited.length);
    // The insert changes the chunk it falls in (and at most the next): a few MiB out of 24, plus one tree.
    expect(stats.newBytes).toBeLessThan(2 * 8 * 1024 * 1024 + 4096);
    expect(stats.newBlobs).toBeLessThanOrEqual(2);

    const target = path.join(sb.dir, 'r');
    await sb.json(['restore', incr.recoveryPoint.id, '--target', target]);
    expect((await readFile(path.join(target, 'big.bin'))).equals(edited)).toBe(true);
  });

  it('lists unreadable files in the job result (completed with warnings)', async (ctx) => {
    if (process.getuid?.() !== 0) return ctx.skip('needs root, to run the CLI as another user');
    const { spawnSync } = await import('node:child_process');
    const { CLI } = await import('../helpers/cli.js');
    // "nobody" must be able to run this checkout's CLI (a clone inside a 0700 directory, such as mktemp -d, is out of its reach).
    if (spawnSync(process.execPath, [CLI, '--version'], { uid: 65534, gid: 65534 }).status !== 0) return ctx.skip(`user 65534 cannot run ${CLI}`);
    await chmod(sb.dir, 0o755);
    const src = path.join(sb.dir, 'src');
    await writeTree(src, { 'ok.txt': 'fine', 'secret.txt': 'no access' });
    await chmod(path.join(src, 'secret.txt'), 0o000);
    await sb.strata(['init']);
    // Run the backup as "nobody", who cannot read secret.txt.
    for (const p of [sb.state, sb.pool, sb.scratch]) await mkdir(p, { recursive: true });
    execFileSync('chown', ['-R', '65534:65534', sb.state, sb.pool, sb.scratch, sb.passphraseFile]);
    const r = spawnSync(process.execPath, [CLI, 'backup', '--path', src, '--config', sb.config, '--json'], { uid: 65534, gid: 65534, encoding: 'utf8' });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.state).toBe('warnings');
    expect(out.sources[0].warnings).toEqual([expect.stringMatching(/^secret\.txt: cannot open: EACCES/)]);
    expect(out.recoveryPoint.stats.files).toBe(1);
  });
});

describe('bad input: one clear line, a stable code, and the pool unchanged', () => {
  async function prepared() {
    const src = path.join(sb.dir, 'src');
    await writeTree(src, { 'a.bin': bytes(31, 3_000_000), b: { 'c.txt': 'c' } });
    await sb.strata(['init']);
    const rp = (await sb.json(['backup', '--path', src])).recoveryPoint.id as string;
    return { src, rp };
  }

  function oneErrorLine(stderr: string, code: string) {
    const lines = stderr.trim().split('\n').filter((l) => l.startsWith('strata: error'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(code);
  }

  it('wrong passphrase', async () => {
    const { src } = await prepared();
    const before = await snapshotDir(sb.pool);
    await writeFile(sb.passphraseFile, 'this is not the passphrase\n');
    const r = await sb.strata(['backup', '--path', src]);
    expect(r.code).toBe(2);
    oneErrorLine(r.stderr, 'STRATA_PASSPHRASE_WRONG');
    expect(await snapshotDir(sb.pool)).toEqual(before);
  });

  it('short passphrase', async () => {
    await writeFile(sb.passphraseFile, 'short\n');
    const r = await sb.strata(['init']);
    expect(r.code).toBe(2);
    oneErrorLine(r.stderr, 'STRATA_PASSPHRASE_WEAK');
    expect(r.stderr).toMatch(/at least 16/);
    await expect(lstat(path.join(sb.pool, 'strata.json'))).rejects.toThrow();
  });

  it('missing pool', async () => {
    const r = await sb.strata(['backup', '--path', sb.dir]);
    expect(r.code).toBe(2);
    oneErrorLine(r.stderr, 'STRATA_POOL_MISSING');
    expect(r.stderr).toMatch(/strata init/);
  });

  it('corrupt pool config', async () => {
    const { src } = await prepared();
    await writeFile(path.join(sb.pool, 'strata.json'), '{"format": "strata-pool", "version": 1, "chun');
    const before = await snapshotDir(sb.pool);
    const r = await sb.strata(['backup', '--path', src]);
    expect(r.code).toBe(2);
    oneErrorLine(r.stderr, 'STRATA_POOL_CORRUPT');
    expect(await snapshotDir(sb.pool)).toEqual(before);
  });

  it('a pack with one flipped byte: check names the pack and the files; restore of that file fails cleanly', async () => {
    const { rp } = await prepared();
    const packs = await findPacks(sb.pool);
    expect(packs).toHaveLength(1);
    const data = await readFile(packs[0]!);
    data[1000]! ^= 0x40;
    await writeFile(packs[0]!, data);
    const before = await snapshotDir(sb.pool);

    const quick = await sb.json(['check']); // structure only: sizes match, trees readable? the flip is in a data blob
    expect(quick).toBeDefined();
    const r = await sb.strata(['check', '--read-data', '--json']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report.ok).toBe(false);
    const problem = report.problems.find((p: { kind: string }) => p.kind === 'pack');
    expect(problem.object).toBe(path.basename(packs[0]!));
    expect(problem.problem).toMatch(/authentication/);
    expect(problem.affected.join('\n')).toContain('a.bin');
    oneErrorLine(r.stderr, 'STRATA_CHECK_FAILED');

    const restore = await sb.strata(['restore', rp, '--target', path.join(sb.dir, 'r'), '--item', 'a.bin']);
    expect(restore.code).toBe(2);
    oneErrorLine(restore.stderr, 'STRATA_INTEGRITY');
    expect(await snapshotDir(sb.pool)).toEqual(before);
  });

  it('a truncated pack is found by check without reading data', async () => {
    await prepared();
    const packs = await findPacks(sb.pool);
    await truncate(packs[0]!, 1000);
    const r = await sb.strata(['check', '--json']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report.problems[0].problem).toMatch(/truncated/);
    expect(report.problems.map((p: { affected: string[] }) => p.affected.join()).join()).toMatch(/a\.bin|whole directory/);
  });

  it('a manifest whose tree names ../x is refused on restore, and check reports it', async () => {
    const { rp } = await prepared();
    await forgeTraversalPoint(sb, '../x');
    const before = await snapshotDir(sb.pool);
    const list = await sb.json(['recovery-points']);
    const evil = list.find((r: { id: string }) => r.id !== rp).id;
    const target = path.join(sb.dir, 'target');
    const r = await sb.strata(['restore', evil, '--target', target]);
    expect(r.code).toBe(2);
    oneErrorLine(r.stderr, 'STRATA_INTEGRITY');
    expect(r.stderr).toMatch(/escape/);
    await expect(lstat(path.join(sb.dir, 'x'))).rejects.toThrow();
    expect(await snapshotDir(sb.pool)).toEqual(before);
  });

  it('usage errors exit 2 with help pointers', async () => {
    const r = await sb.strata(['restore']);
    expect(r.code).toBe(2);
    const bad = await sb.strata(['backup', 'no-such-group']);
    expect(bad.code).toBe(2);
    oneErrorLine(bad.stderr, 'STRATA_GROUP_UNKNOWN');
    // An option left without its value takes the next option as it: named, nothing run (the helper appends --config FILE).
    const swallowed = await sb.strata(['backup', '--path', sb.dir, '--exclude']);
    expect(swallowed.code).toBe(2);
    oneErrorLine(swallowed.stderr, 'STRATA_USAGE');
    expect(swallowed.stderr).toMatch(/--exclude is missing its value: it took the option --config as one/);
    const target = await sb.strata(['restore', 'latest', '--target', '--json']);
    expect(target.code).toBe(2);
    oneErrorLine(target.stderr, 'STRATA_USAGE');
    expect(target.stderr).toMatch(/--target is missing its value: it took the option --json/);
    await expect(lstat(path.join(sb.dir, '--json'))).rejects.toThrow();
    const help = await sb.strata(['restore', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--on-conflict/);
  });
});

async function findPacks(pool: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(path.join(pool, 'packs'))) for (const f of await readdir(path.join(pool, 'packs', d))) out.push(path.join(pool, 'packs', d, f));
  return out;
}

/** Writes a recovery point whose root tree holds an entry named `name`, with the pool's own keys. */
async function forgeTraversalPoint(sb: Sandbox, name: string): Promise<void> {
  const { Pool } = await import('../../src/replica/pool.js');
  const { DirStore } = await import('../../src/store/dir-store.js');
  const { Packer } = await import('../../src/replica/packer.js');
  const { encodeBlob } = await import('../../src/replica/blob-codec.js');
  const { TEST_PASSPHRASE } = await import('../helpers/cli.js');
  const pool = await Pool.open(new DirStore(sb.pool), TEST_PASSPHRASE);
  const content = Buffer.from('owned');
  const contentId = pool.blobId(content);
  const tree = Buffer.from(
    JSON.stringify({ v: 1, nodes: [{ name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: '0', size: 5, content: [contentId.toString('hex')] }] }),
  );
  const treeId = pool.blobId(tree);
  const packer = new Packer(pool.store, { encKey: pool.keys.encKey, targetBytes: 1 << 20 });
  await packer.add(0, contentId, encodeBlob(pool.keys.encKey, contentId, content).sealed, 5, 0);
  await packer.add(1, treeId, encodeBlob(pool.keys.encKey, treeId, tree).sealed, tree.length, 0);
  const packs = await packer.flush();
  await pool.writeIndex({ supersedes: [], packs });
  await pool.writeManifest({
    v: 1,
    group: '',
    source: '/evil',
    sourceType: 'directory',
    host: 'evil',
    time: new Date().toISOString(),
    tree: treeId.toString('hex'),
    parent: null,
    stats: { files: 1, dirs: 0, symlinks: 0, bytes: 5, filesRead: 1, bytesRead: 5, newBlobs: 2, newBytes: 5, storedBytes: 0, packs: 1, warnings: 0, durationMs: 0 },
    warnings: [],
  });
  void rm;
  void stat;
}
