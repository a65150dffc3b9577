// kill -9 of a backup (and of a passphrase change) at many points: the pool stays sound, every earlier
// recovery point restores byte for byte, and the next job succeeds.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, digestTree, text, writeTree } from '../helpers/fs-tree.js';
import { AzureBlobStore, createContainerClient } from '../../src/cloud/azure-store.js';
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, spawnCli, type Sandbox } from '../helpers/cli.js';
import { startDaemonProcess, type DaemonProcess } from '../helpers/daemon.js';
import { mapLimit } from '../../src/replica/pipeline/limit.js';

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


describe('kill -9 of the daemon during a job', () => {
  it('the restarted daemon records the job interrupted, no lock is left wedged, and the next backup through it completes', async () => {
    const dir = path.join(sb.dir, 'daemon-kill');
    await writeTree(dir, { 'big.bin': bytes(91, 20_000_000), 'small.txt': text(92, 100_000) });
    const killed = await startDaemonProcess(sb, { env: { STRATA_CRASH_POINT: 'pack-written#1' } });
    try {
      const viaDaemon = await sb.strata(['backup', '--path', dir]);
      expect(viaDaemon.code).not.toBe(0); // the daemon died under it
      expect((await killed.exited).signal).toBe('SIGKILL');
    } finally {
      await killed.stop('SIGKILL');
    }
    // The lock the dead daemon held is still in the pool until someone breaks it.
    const restarted = await startDaemonProcess(sb);
    try {
      const jobs = await sb.json<{ id: number; kind: string; state: string; error?: string }[]>(['jobs']);
      expect(jobs.filter((j) => j.state === 'running')).toEqual([]);
      expect(jobs[0]).toMatchObject({ kind: 'backup', state: 'interrupted' });
      const next = await sb.json(['backup', '--path', dir]);
      expect(next.state).toBe('completed');
      // (A `.tmp-*` file the dead daemon was writing is no lock: the daemon removes it once 5 minutes old.)
      expect((await readdir(path.join(sb.pool, 'locks'))).filter((n) => !n.startsWith('.tmp-'))).toEqual([]);
      await expectSound('daemon-restarted');
    } finally {
      await restarted.stop();
    }
  });
});

/**
 * kill -9 of a prune at its steps (replica/prune.ts, agent/prune.ts) and of the vault's soft delete and
 * purge: after each kill both copies check sound, every point retention keeps restores byte for byte,
 * the next prune completes, and what the killed prune deleted locally still reaches the vault.
 */
describe('kill -9 during a prune', () => {
  const DAY = 24 * 60 * 60 * 1000;
  const T0 = Date.parse('2031-01-05T10:00:00Z');
  let psb: Sandbox;
  let data: string;
  let adhoc: { id: string; digest: Awaited<ReturnType<typeof digestTree>> };
  let vault: AzureBlobStore;
  const container = `prune-crash-${Date.now().toString(36)}`;
  const at = (day: number, extra: NodeJS.ProcessEnv = {}) => ({ env: { STRATA_FAKE_NOW: new Date(T0 + day * DAY).toISOString(), ...extra } });

  beforeAll(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'strata-prune-src-'));
    data = path.join(dir, 'pdata');
    psb = await makeSandbox(
      { protectionGroups: [{ name: 'pg', sources: [{ path: data }], disk: { syncFrequency: '0 * * * *', retentionDays: 1 }, online: { schedule: '0 21 * * *', retention: { daily: 7 } } }] },
      { vault: azurite.endpoint, container },
    );
    expect((await psb.strata(['init'], at(0))).code).toBe(0);
    const adhocDir = path.join(dir, 'adhoc');
    await writeTree(adhocDir, { 'kept.txt': text(77, 300_000), 'kept.bin': bytes(78, 500_000) });
    adhoc = { id: (await psb.json(['backup', '--path', adhocDir, '--to', 'both'], at(0))).recoveryPoint.id, digest: await digestTree(adhocDir) };
    const serverId = (await psb.json(['cloud', 'status'], at(0))).serverId;
    vault = new AzureBlobStore(createContainerClient({ endpoint: azurite.endpoint, container, auth: { type: 'AccountKey', accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY } }), {
      prefix: `servers/${serverId}/`,
    });
  }, 120_000);

  afterAll(async () => {
    await rm(path.dirname(data), { recursive: true, force: true });
    await psb?.cleanup();
  });

  async function restoresExactly(id: string, digest: unknown, day: number, label: string): Promise<void> {
    const target = path.join(psb.dir, `pr-${label.replace(/\W/g, '_')}-${id.slice(0, 8)}`);
    const r = await psb.strata(['restore', id, '--target', target], at(day));
    expect(r.code, `${label}: restore ${id.slice(0, 12)}: ${r.stderr}`).toBe(0);
    expect(await digestTree(target), `${label}: restore of ${id.slice(0, 12)}`).toEqual(digest);
    await rm(target, { recursive: true, force: true });
  }

  // Rounds 10 days apart: a point A (a big file that then goes, and a file that stays), a point B a day
  // later; the prune at day +8 (past 1 day on disk and 7 daily points in the cloud) removes A (and the
  // previous round's B), deletes and repacks packs. From the fourth round on, the marks of the first are
  // more than 14 days old: the backup's replication purges them.
  const points = ['prune-manifests-deleted', 'prune-index-written', 'prune-pack-deleted#2', 'prune-index-deleted', 'prune-catalog-synced', 'vault-soft-deleted#1', 'vault-purged#1'];
  it.each(points.map((p, i) => [p, i] as const))('at %s: both copies sound, kept points restore, the next prune completes', async (point, round) => {
    const day = 10 * (round + 1);
    const purge = point.startsWith('vault-purge');
    await rm(data, { recursive: true, force: true });
    await writeTree(data, { 'big.bin': bytes(500 + round, 3_000_000), 'stays.txt': text(600 + round, 400_000) });
    const backupA = await psb.strata(['backup', 'pg', '--json'], at(day, purge ? { STRATA_CRASH_POINT: point } : {}));
    if (purge) {
      // Killed while the replication purged what was marked more than 14 days ago.
      expect(backupA.signal, backupA.stderr).toBe('SIGKILL');
      const check = await psb.strata(['check', '--read-data', '--cloud', '--json'], at(day));
      expect(check.code, `${point}: ${check.stdout.slice(0, 2000)}`).toBe(0);
      await restoresExactly(adhoc.id, adhoc.digest, day, point);
      const again = await psb.json(['backup', 'pg'], at(day));
      expect(again.state).toBe('completed');
      const repl = await psb.json(['replicate'], at(day));
      expect(repl.purged).toEqual([]); // the interrupted purge was finished by the backup's replication
      expect((await psb.json(['check', '--read-data', '--cloud'], at(day))).ok).toBe(true);
      return;
    }
    expect(backupA.code, backupA.stderr).toBe(0);
    const a = JSON.parse(backupA.stdout).recoveryPoint.id as string;
    await rm(path.join(data, 'big.bin'));
    await writeTree(data, { 'new.txt': text(700 + round, 100_000) });
    const b = (await psb.json(['backup', 'pg'], at(day + 1))).recoveryPoint.id as string;
    const bDigest = await digestTree(data);

    const killed = await psb.strata(['prune', '--json'], at(day + 8, { STRATA_CRASH_POINT: point }));
    expect(killed.signal, `${point}: the prune was not killed: ${killed.stdout}${killed.stderr}`).toBe('SIGKILL');
    const check = await psb.strata(['check', '--read-data', '--cloud', '--json'], at(day + 8));
    expect(check.code, `${point}: ${check.stdout.slice(0, 2000)}${check.stderr}`).toBe(0);
    await restoresExactly(b, bDigest, day + 8, point);
    await restoresExactly(adhoc.id, adhoc.digest, day + 8, point);

    const next = await psb.json(['prune'], at(day + 8));
    expect(next.retention.kept.map((k: { id: string }) => k.id)).toEqual(expect.arrayContaining([b, adhoc.id]));
    const points = (await psb.json(['recovery-points'], at(day + 8))).map((r: { id: string }) => r.id);
    expect(points).not.toContain(a);
    expect(points).toEqual(expect.arrayContaining([b, adhoc.id]));
    // What the killed prune deleted locally is marked in the vault (soft delete), whichever prune did it.
    expect((await vault.getMetadata(`snapshots/${a}`))['strata_deleted_at'], `${point}: snapshots/${a.slice(0, 12)} not marked in the vault`).toBeTruthy();
    // (The pool left by this prune is checked by the next round, after its kill.)
  });
});

/**
 * The full crash suite (`npm run test:crash`): at points drawn from a seeded generator, a backup (with
 * its replication and the vault purge), a prune (with the vault soft delete) or a passphrase change is
 * killed with SIGKILL. Backups and prunes run in the real daemon (the CLI sends them over its socket),
 * and the daemon is what dies: at a named crash point (STRATA_CRASH_POINT in the daemon's environment)
 * or by a seeded timer. A passphrase change has no daemon route (it runs in the CLI, under the pool's
 * exclusive lock): the CLI is killed at its point and the daemon with it, as in a power cut. Then a
 * fresh daemon starts on the same config, and: no job is left "running" in its records (the killed one
 * is "interrupted"); `check --read-data --cloud` passes; every recovery point that existed before the
 * kill, and that retention keeps, restores byte for byte; the next backup through the restarted daemon
 * completes, and leaves no lock behind.
 */
describe.runIf(process.env['STRATA_SUITE'] === 'full')('seeded random kill -9 points, daemon restarted after each', () => {
  const SEED = Number(process.env['STRATA_CRASH_SEED'] ?? 20261125);
  const POINTS = Number(process.env['STRATA_CRASH_POINTS'] ?? 50);
  const BUDGET_MS = Number(process.env['STRATA_CRASH_BUDGET_MS'] ?? 25 * 60_000);
  const BACKUP_POINTS = ['store-temp-written', 'pack-written', 'tree', 'index-written', 'before-manifest', 'manifest-written', 'replication-pack-uploaded', 'replication-index-uploaded', 'vault-purge-index-written', 'vault-purged'];
  const PRUNE_POINTS = ['prune-manifest-deleted', 'prune-manifests-deleted', 'prune-repacked', 'pack-written', 'prune-index-written', 'prune-pack-deleted', 'prune-index-deleted', 'prune-pool-done', 'prune-catalog-synced', 'vault-soft-deleted', 'prune-vault-marked'];
  const PASSPHRASE_POINTS = ['passphrase-slot-added', 'passphrase-vault-slot-added', 'passphrase-file-written'];
  const DAY = 24 * 60 * 60 * 1000;
  // Close to now: the vault registration (made at the real time) counts as a contact, and the gate
  // refuses work after 15 days without one; each round's replication is a new contact.
  const T0 = Math.floor(Date.now() / DAY) * DAY + DAY + 10 * 60 * 60 * 1000;
  let rand = SEED >>> 0;
  const next = () => {
    rand = (rand + 0x6d2b79f5) >>> 0;
    let t = rand;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T,>(xs: T[]): T => xs[Math.floor(next() * xs.length)]!;
  const tally = { tried: 0, midJob: 0, timed: 0, named: 0, poolsDamaged: 0, pointsLost: 0, pointsRestored: 0, stuckJobs: 0, leftLocks: 0, byOp: {} as Record<string, number>, log: [] as string[], started: Date.now() };
  const known = new Map<string, Awaited<ReturnType<typeof digestTree>>>();
  let dsb: Sandbox;
  let daemon: DaemonProcess | null = null;
  let dataDir: string;

  afterAll(async () => {
    await daemon?.stop('SIGTERM', 10_000).catch(() => {});
    const minutes = ((Date.now() - tally.started) / 60_000).toFixed(1);
    console.log(tally.log.join('\n'));
    console.log(
      `crash suite (seed ${SEED}): ${tally.tried} points tried (${Object.entries(tally.byOp).map(([k, v]) => `${v} ${k}`).join(', ')}), ` +
        `${tally.midJob} kills landed mid-job (${tally.named} at named points, ${tally.timed} timed), ${tally.tried - tally.midJob} jobs finished before their kill; ` +
        `${tally.poolsDamaged} pools damaged, ${tally.pointsLost} recovery points lost (${tally.pointsRestored} restores verified), ` +
        `${tally.stuckJobs} jobs left running, ${tally.leftLocks} locks left; ${minutes} min`,
    );
    await dsb?.cleanup();
  });

  it(`${POINTS} points`, async () => {
    const { readdir } = await import('node:fs/promises');
    tally.started = Date.now();
    dsb = await makeSandbox({}, { vault: azurite.endpoint });
    dataDir = path.join(dsb.dir, 'data');
    // The group's schedules never fall during the run; its retention (1 day on disk, 7 daily points in
    // the cloud) gives every prune something to remove as the rounds move a day at a time.
    const config = JSON.parse(await readFile(dsb.config, 'utf8'));
    config.protectionGroups = [{ name: 'rg', sources: [{ path: dataDir }], disk: { syncFrequency: '0 4 * * *', retentionDays: 1 }, online: { schedule: '0 5 * * *', retention: { daily: 7 } } }];
    await writeFile(dsb.config, JSON.stringify(config, null, 2));
    // Within a day: a killed backup or passphrase change at +3 h, a prune (and its dry run) at +9 h; the
    // restarted daemon (checks, restores, the next backup) an hour later. Recovery points are made at
    // +3, +4 or +10 h, so none is ever within seconds of a retention boundary when a prune runs at +9 h.
    const HOUR = 60 * 60 * 1000;
    const env = (day: number, extra: NodeJS.ProcessEnv = {}, hours = 0): NodeJS.ProcessEnv => ({ STRATA_FAKE_NOW: new Date(T0 + day * DAY + hours * HOUR).toISOString(), ...extra });
    await writeTree(dataDir, { 'base.txt': text(1, 300_000), 'base.bin': bytes(2, 1_000_000) });
    const init = await dsb.strata(['init'], { env: env(0) });
    expect(init.code, init.stderr).toBe(0);
    const backupNow = async (day: number, hours = 0) => {
      const r = await dsb.strata(['backup', 'rg', '--json'], { env: env(day, {}, hours), timeoutMs: 300_000 });
      expect(r.code, `backup: ${r.stderr}`).toBe(0);
      const done = JSON.parse(r.stdout);
      expect(done.state).toBe('completed');
      known.set(done.recoveryPoint.id, await digestTree(dataDir));
    };
    daemon = await startDaemonProcess(dsb, { env: env(0) });
    await backupNow(0);
    let day = 1;
    // Round i runs on day i + 1.

    for (let i = 0; i < POINTS; i++) {
      if (Date.now() - tally.started > BUDGET_MS) {
        tally.log.push(`stopped after ${i} points: the time budget (${BUDGET_MS / 60_000} min) is spent`);
        break;
      }
      // Fresh data each round (one new file, the oldest beyond three dropped), so every kind of kill
      // lands while something new is being written, and prune has expired points to remove.
      await writeTree(dataDir, { [`r${i}.bin`]: bytes(1000 + i, 1_500_000 + Math.floor(next() * 3_500_000)), [`r${i}.txt`]: text(2000 + i, 150_000) });
      if (i >= 3) await rm(path.join(dataDir, `r${i - 3}.bin`), { force: true });
      const r = next();
      const op = r < 0.12 ? 'passphrase' : r < 0.45 ? 'prune' : 'backup';
      const at = op === 'prune' ? 9 : 3;
      tally.byOp[op] = (tally.byOp[op] ?? 0) + 1;
      // The previous round's daemon stops first: the listing and the dry run run in the CLI, on this round's clock.
      await daemon!.stop('SIGTERM', 20_000);
      // What must survive: every known point in the catalog now, less what retention removes (a prune's dry run decides it).
      // (On disk: a point an earlier prune removed from the pool, still listed while the vault holds it, is not restored from disk.)
      const listed = new Set(
        (await dsb.json(['recovery-points'], { env: env(day, {}, at) })).filter((p: { diskState: string }) => p.diskState === 'present').map((p: { id: string }) => p.id),
      );
      let expected = [...known.keys()].filter((id) => listed.has(id));
      if (op === 'prune') {
        const dry = await dsb.json(['prune', '--dry-run'], { env: env(day, {}, at) });
        const kept = new Set(dry.retention.kept.map((k: { id: string }) => k.id));
        expected = expected.filter((id) => kept.has(id));
      }
      let named: string | null = null;
      let killAfter: number | undefined;
      if (op === 'passphrase') named = pick(PASSPHRASE_POINTS);
      // A prune passes most of its points once (a backup passes its pack and tree points many times): #1.
      else if (next() < 0.55) named = op === 'prune' ? `${pick(PRUNE_POINTS)}#1` : `${pick(BACKUP_POINTS)}#${1 + Math.floor(next() * 2)}`;
      else killAfter = 200 + Math.floor(next() * (op === 'prune' ? 350 : 1500));
      const what = `${op}${named ? ` @ ${named}` : ` killed after ${killAfter} ms`}`;

      // The round's daemon: the crash point in its environment (a passphrase change: in the CLI's).
      daemon = await startDaemonProcess(dsb, { env: env(day, op !== 'passphrase' && named ? { STRATA_CRASH_POINT: named } : {}, at) });
      const d = daemon;
      const args = op === 'passphrase' ? ['passphrase', 'change', '--generate'] : op === 'prune' ? ['prune'] : ['backup', 'rg'];
      const cli = spawnCli([...args, '--json', '--config', dsb.config], { env: env(day, op === 'passphrase' ? { STRATA_CRASH_POINT: named! } : {}, at) });
      let out = '';
      cli.stdout?.on('data', (b: Buffer) => (out += b.toString()));
      cli.stderr?.resume();
      const timer = killAfter !== undefined ? setTimeout(() => d.child.kill('SIGKILL'), killAfter) : undefined;
      const cliEnd = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => cli.on('close', (code, signal) => resolve({ code, signal })));
      if (timer) clearTimeout(timer);
      const daemonDied = d.child.exitCode !== null || d.child.signalCode !== null;
      // Mid-job: the daemon died under the job (its crash point, or the timer before the job ended), or the passphrase CLI at its point.
      const mid = op === 'passphrase' ? cliEnd.signal === 'SIGKILL' : daemonDied && cliEnd.code !== 0;
      // Whatever happened, the power goes: the daemon is killed if it still runs.
      d.child.kill('SIGKILL');
      await d.exited;
      tally.tried++;
      if (mid) {
        tally.midJob++;
        if (named) tally.named++;
        else tally.timed++;
      }
      if (cliEnd.code === 0 && op === 'backup') {
        try {
          const done = JSON.parse(out);
          if (done.recoveryPoint?.id) known.set(done.recoveryPoint.id, await digestTree(dataDir));
        } catch {
          /* not a result */
        }
      }

      // A fresh daemon on the same config.
      daemon = await startDaemonProcess(dsb, { env: env(day, {}, at + 1) });
      const problems: string[] = [];
      const jobs = await dsb.json(['jobs', '--limit', '20'], { env: env(day, {}, at + 1) });
      const running = jobs.filter((j: { state: string }) => j.state === 'running');
      if (running.length) {
        tally.stuckJobs += running.length;
        problems.push(`jobs left running: ${running.map((j: { id: number; kind: string }) => `${j.id} ${j.kind}`).join(', ')}`);
      }
      const interrupted = jobs.filter((j: { state: string }) => j.state === 'interrupted').length;
      const check = await dsb.strata(['check', '--read-data', '--cloud', '--json'], { env: env(day, {}, at + 1), timeoutMs: 300_000 });
      if (check.code !== 0) {
        tally.poolsDamaged++;
        problems.push(`check: ${check.stdout.slice(0, 1500)}${check.stderr}`);
      }
      let lost = 0;
      // One at a time: the daemon runs one job per protection group.
      await mapLimit(expected, 1, async (id) => {
        const t = path.join(dsb.dir, `rr-${i}-${id.slice(0, 8)}`);
        const rr = await dsb.strata(['restore', id, '--target', t], { env: env(day, {}, at + 1), timeoutMs: 300_000 });
        const ok = rr.code === 0 && JSON.stringify(await digestTree(t)) === JSON.stringify(known.get(id));
        await rm(t, { recursive: true, force: true });
        if (ok) tally.pointsRestored++;
        else {
          lost++;
          problems.push(`recovery point ${id.slice(0, 12)} does not restore exactly: ${rr.stderr.trim()}`);
        }
      });
      tally.pointsLost += lost;
      // The next job, through the restarted daemon.
      await backupNow(day, at + 1);
      const locks = (await readdir(path.join(dsb.pool, 'locks')).catch(() => [] as string[])).filter((n) => !n.startsWith('.tmp-'));
      if (locks.length) {
        tally.leftLocks += locks.length;
        problems.push(`locks left after the next job: ${locks.join(', ')}`);
      }
      tally.log.push(`${i + 1}. day ${day}: ${what}: ${mid ? 'killed mid-job' : 'finished before the kill'}; ${interrupted} interrupted job(s) in the records; ${expected.length} points verified${problems.length ? `; PROBLEMS: ${problems.join(' | ')}` : ''}`);
      expect(problems, `${i + 1}. ${what}`).toEqual([]);
      day++;
    }
    expect(tally.poolsDamaged).toBe(0);
    expect(tally.pointsLost).toBe(0);
    expect(tally.tried).toBeGreaterThanOrEqual(Math.min(POINTS, 50));
  }, 40 * 60_000);
});
