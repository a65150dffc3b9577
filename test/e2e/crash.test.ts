// kill -9 of a backup (and of a passphrase change) at many points: the pool stays sound, every earlier
// recovery point restores byte for byte, and the next job succeeds.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, digestTree, text, writeTree } from '../helpers/fs-tree.js';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, spawnCli, type Sandbox } from '../helpers/cli.js';

let sb: Sandbox;
let azurite: Azurite;
let src: string;
let firstRp: string;
let firstDigest: Awaited<ReturnType<typeof digestTree>>;

beforeAll(async () => {
  azurite = await startAzurite();
  sb = await makeSandbox({}, { vault: azurite.endpoint });
  src = path.join(sb.dir, 'src');
  await writeTree(src, { 'a.txt': 'first version', docs: { 'd.log': text(1, 1_000_000) }, 'm.bin': bytes(2, 2_000_000) });
  expect((await sb.strata(['init'])).code).toBe(0);
  firstRp = (await sb.json(['backup', '--path', src])).recoveryPoint.id;
  firstDigest = await digestTree(src);
  // Enough new data for several 16 MiB packs in the runs that get killed.
  await writeTree(path.join(src, 'new'), { 'x1.bin': bytes(3, 20_000_000), 'x2.bin': bytes(4, 20_000_000), 'logs.txt': text(5, 6_000_000) });
}, 120_000);

afterAll(async () => {
  await sb.cleanup();
  await azurite.stop();
});

async function expectSound(label: string): Promise<void> {
  const check = await sb.strata(['check', '--read-data', '--json']);
  expect(check.code, `${label}: check --read-data: ${check.stderr}`).toBe(0);
  expect(JSON.parse(check.stdout).ok).toBe(true);
  const target = path.join(sb.dir, `restore-${label.replace(/[^a-z0-9]/gi, '_')}`);
  const r = await sb.strata(['restore', firstRp, '--target', target]);
  expect(r.code, `${label}: restore: ${r.stderr}`).toBe(0);
  expect(await digestTree(target)).toEqual(firstDigest);
}

function runUntilKilled(env: NodeJS.ProcessEnv, killAfterMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    const child = spawnCli(['backup', '--path', src, '--config', sb.config], { env });
    child.stdout?.resume();
    child.stderr?.resume();
    const timer = killAfterMs !== undefined ? setTimeout(() => child.kill('SIGKILL'), killAfterMs) : undefined;
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

describe('kill -9 during a backup', () => {
  const points = ['store-temp-written#1', 'pack-written#1', 'pack-written#2', 'store-temp-written#3', 'tree#2', 'index-written', 'before-manifest', 'manifest-written'];
  it.each(points)('at %s leaves a sound pool and the next backup succeeds', async (point) => {
    const r = await runUntilKilled({ STRATA_CRASH_POINT: point });
    expect(r.signal).toBe('SIGKILL');
    await expectSound(point);
    // The next backup (of another source, so the killed run's new data stays new for the next point) succeeds.
    const next = await sb.json(['backup', '--path', path.join(src, 'docs')]);
    expect(next.state).toBe('completed');
  });

  it.each([150, 600, 1200])('killed by the clock after %i ms', async (ms) => {
    await runUntilKilled({}, ms);
    await expectSound(`timed-${ms}`);
  });

  it('then a backup completes, and restores the latest tree exactly', async () => {
    await writeFile(path.join(src, 'a.txt'), 'second version');
    const done = await sb.json(['backup', '--path', src]);
    expect(done.state).toBe('completed');
    const target = path.join(sb.dir, 'final');
    await sb.json(['restore', done.recoveryPoint.id, '--target', target]);
    expect(await digestTree(target)).toEqual(await digestTree(src));
    await expectSound('final');
  });
});

describe('kill -9 during a passphrase change', () => {
  it.each(['passphrase-slot-added', 'passphrase-vault-slot-added', 'passphrase-file-written'])('at %s: the passphrase file still opens the pool (and the vault copy)', async (point) => {
    const newFile = path.join(sb.dir, `new-pass-${point}`);
    await writeFile(newFile, `a brand new passphrase for ${point}\n`, { mode: 0o600 });
    const child = spawnCli(['passphrase', 'change', '--new-passphrase-file', newFile, '--config', sb.config], { env: { STRATA_CRASH_POINT: point } });
    child.stdout?.resume();
    child.stderr?.resume();
    const signal = await new Promise((resolve) => child.on('close', (_c, s) => resolve(s)));
    expect(signal).toBe('SIGKILL');
    const list = await sb.strata(['recovery-points', '--json']);
    expect(list.code, list.stderr).toBe(0);
    await expectSound(point);
    const cloud = await sb.strata(['check', '--cloud', '--json']);
    expect(cloud.code, cloud.stdout + cloud.stderr).toBe(0);
  });

  it('a completed change: the old passphrase no longer opens the pool, the new one does', async () => {
    const old = await readFile(sb.passphraseFile, 'utf8');
    const r = await sb.json(['passphrase', 'change', '--generate']);
    expect(r.slot).toMatch(/^[0-9a-f]{64}$/);
    const now = await readFile(sb.passphraseFile, 'utf8');
    expect(now).not.toBe(old);
    await expectSound('after-change');
    await writeFile(sb.passphraseFile, old);
    const refused = await sb.strata(['recovery-points']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/STRATA_PASSPHRASE_WRONG/);
    await writeFile(sb.passphraseFile, now);
  });
});

describe('kill -9 during replication', () => {
  it.each(['replication-pack-uploaded#1', 'replication-index-uploaded'])('at %s: both copies stay sound and the next run completes the upload', async (point) => {
    await writeTree(path.join(src, `repl-${point.replace(/\W/g, '')}`), { 'r.bin': bytes(point.length, 18_000_000) });
    const child = spawnCli(['backup', '--path', src, '--to', 'both', '--config', sb.config], { env: { STRATA_CRASH_POINT: point } });
    child.stdout?.resume();
    child.stderr?.resume();
    const signal = await new Promise((resolve) => child.on('close', (_c, s) => resolve(s)));
    expect(signal).toBe('SIGKILL');
    await expectSound(point);
    const done = await sb.json(['replicate']);
    expect(done.recoveryPoints.length).toBeGreaterThan(0);
    const cloud = await sb.json(['check', '--cloud', '--read-data']);
    expect(cloud.ok).toBe(true);
  });
});

/**
 * The full crash suite (`npm run test:crash`): kills at points drawn from a seeded generator, across
 * backup, replication and passphrase change, each followed by the same checks.
 */
describe.runIf(process.env['STRATA_SUITE'] === 'full')('seeded random kill -9 points', () => {
  const SEED = Number(process.env['STRATA_CRASH_SEED'] ?? 20261125);
  const POINTS = Number(process.env['STRATA_CRASH_POINTS'] ?? 50);
  const NAMED = ['store-temp-written', 'pack-written', 'tree', 'index-written', 'before-manifest', 'manifest-written', 'replication-pack-uploaded', 'replication-index-uploaded'];
  let rand = SEED >>> 0;
  const next = () => {
    rand = (rand + 0x6d2b79f5) >>> 0;
    let t = rand;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const tally = { tried: 0, poolsDamaged: 0, pointsLost: 0, log: [] as string[] };
  const kept: { id: string; digest: Awaited<ReturnType<typeof digestTree>>; path: string }[] = [];

  afterAll(() => {
    console.log(`crash suite (seed ${SEED}): ${tally.tried} points tried, ${tally.poolsDamaged} pools damaged, ${tally.pointsLost} recovery points lost`);
    console.log(tally.log.join('\n'));
  });

  it(`${POINTS} points`, async () => {
    const dataDir = path.join(sb.dir, 'random-src');
    for (let i = 0; i < POINTS; i++) {
      // Fresh data each round, so every kind of kill lands while something new is being written.
      await writeTree(path.join(dataDir, `round-${i}`), { 'n.bin': bytes(1000 + i, 6_000_000 + Math.floor(next() * 20_000_000)), 't.txt': text(2000 + i, 200_000) });
      const op = next() < 0.15 ? 'passphrase' : 'backup';
      let env: NodeJS.ProcessEnv = {};
      let killAfter: number | undefined;
      let what: string;
      if (op === 'passphrase') {
        const p = ['passphrase-slot-added', 'passphrase-vault-slot-added', 'passphrase-file-written'][Math.floor(next() * 3)]!;
        env = { STRATA_CRASH_POINT: p };
        what = `passphrase change @ ${p}`;
      } else if (next() < 0.5) {
        const p = `${NAMED[Math.floor(next() * NAMED.length)]}#${1 + Math.floor(next() * 2)}`;
        env = { STRATA_CRASH_POINT: p };
        what = `backup+replication @ ${p}`;
      } else {
        killAfter = 100 + Math.floor(next() * 2500);
        what = `backup+replication killed after ${killAfter} ms`;
      }
      const args =
        op === 'passphrase'
          ? ['passphrase', 'change', '--generate', '--config', sb.config]
          : ['backup', '--path', dataDir, '--to', 'both', '--config', sb.config];
      const child = spawnCli(args, { env });
      child.stdout?.resume();
      child.stderr?.resume();
      const timer = killAfter !== undefined ? setTimeout(() => child.kill('SIGKILL'), killAfter) : undefined;
      const sig = await new Promise((resolve) => child.on('close', (_c, s) => resolve(s)));
      if (timer) clearTimeout(timer);
      tally.tried++;
      tally.log.push(`${i + 1}. ${what}: ${sig === 'SIGKILL' ? 'killed' : 'finished before the kill'}`);
      // Sound on disk and in the vault; every kept point restores exactly; the next job succeeds.
      const disk = await sb.strata(['check', '--read-data', '--cloud', '--json']);
      if (disk.code !== 0) tally.poolsDamaged++;
      expect(disk.code, `${what}: ${disk.stdout.slice(0, 2000)}`).toBe(0);
      for (const k of kept.slice(-3)) {
        const t = path.join(sb.dir, `rr-${i}`);
        const r = await sb.strata(['restore', k.id, '--target', t]);
        if (r.code !== 0 || JSON.stringify(await digestTree(t)) !== JSON.stringify(k.digest)) tally.pointsLost++;
        await (await import('node:fs/promises')).rm(t, { recursive: true, force: true });
      }
      expect(tally.pointsLost).toBe(0);
      const done = await sb.json(['backup', '--path', dataDir, '--to', 'both']);
      expect(done.state).toBe('completed');
      kept.push({ id: done.recoveryPoint.id, digest: await digestTree(dataDir), path: dataDir });
    }
    expect(tally.poolsDamaged).toBe(0);
    expect(tally.pointsLost).toBe(0);
  }, 3_600_000);
});
