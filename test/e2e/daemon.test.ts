// End-to-end: the real `strata daemon` on a temp state dir, driven by the real CLI over its socket.
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { REPO, makeSandbox, runCli, spawnCli, type Sandbox } from '../helpers/cli.js';
import { ControlClient } from '../../src/agent/control-client.js';
import { fastSchedules, registeredSandbox, startDaemonProcess, waitFor, type DaemonProcess } from '../helpers/daemon.js';
import { bytes, digestTree, text, writeTree } from '../helpers/fs-tree.js';

let azurite: Azurite;
const cleanups: (() => Promise<unknown>)[] = [];
beforeAll(async () => {
  azurite = await startAzurite();
}, 60_000);
afterAll(async () => {
  await azurite?.stop();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const DAILY = { syncFrequency: '0 0 * * *', retentionDays: 30 };

async function sandbox(extra: Record<string, unknown>): Promise<Sandbox> {
  const sb = await registeredSandbox(azurite, extra);
  cleanups.push(() => sb.cleanup());
  return sb;
}

async function daemon(sb: Sandbox, env: NodeJS.ProcessEnv = {}): Promise<DaemonProcess> {
  const d = await startDaemonProcess(sb, { env });
  cleanups.push(() => d.stop('SIGKILL'));
  return d;
}

/** Every line of stderr is one error line `strata: error CODE: …`. */
function oneErrorLine(stderr: string, code: string): void {
  const lines = stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^strata: error ${code}: `));
}

describe('strata setup', () => {
  it('checks, summarizes, and creates the pool, scratch area and catalog only when confirmed', async () => {
    const sb = await makeSandbox({ protectionGroups: [{ name: 'g', sources: [{ path: 'data' }], disk: DAILY }] });
    cleanups.push(() => sb.cleanup());
    await rm(sb.scratch, { recursive: true, force: true });
    const unconfirmed = await sb.strata(['setup']);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stdout).toMatch(/Prerequisites:[\s\S]*the storage pool .* is on a local file system[\s\S]*Settings:[\s\S]*storage pool .*\(will be created\)/);
    oneErrorLine(unconfirmed.stderr, 'STRATA_USAGE');
    expect(unconfirmed.stderr).toMatch(/--yes/);
    await expect(stat(sb.pool)).rejects.toThrow();
    const done = await sb.json<{ created: Record<string, boolean>; poolId: string }>(['setup', '--yes']);
    expect(done.created).toEqual({ stateDir: true, scratch: true, catalog: true, pool: true });
    expect((await stat(sb.state)).mode & 0o777).toBe(0o700);
    const again = await sb.json<{ created: Record<string, boolean>; poolId: string }>(['setup', '--yes']);
    expect(again).toMatchObject({ poolId: done.poolId, created: { pool: false } });
  });
});

describe('strata daemon', () => {
  it('fires schedules, runs ad hoc backups and restores sent over the socket, and streams their progress', async () => {
    // The "big" group's jobs wait in their pre command while the file `hold` exists (bounded: 60 s),
    // so that the test decides when a job moves on, not a sleep that a loaded machine outlasts.
    const sb = await sandbox({
      protectionGroups: [
        // Every 15 minutes, read on a clock 600 times faster: every 1.5 s.
        { name: 'sched', sources: [{ path: 'data/sched' }], disk: { syncFrequency: '*/15 * * * *', retentionDays: 1 } },
        // Daily at midnight: never fires during the test (its schedule clock starts at noon).
        { name: 'big', sources: [{ path: 'data/big', pre: 'i=0; while [ -e "$STRATA_SOURCE/../../hold" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done' }], disk: DAILY },
      ],
    });
    const hold = path.join(sb.dir, 'hold'); // $STRATA_SOURCE/../../hold for the "big" source
    await writeTree(path.join(sb.dir, 'data', 'sched'), { 'a.txt': 'scheduled' });
    await writeTree(path.join(sb.dir, 'data', 'big'), { 'r.bin': bytes(1, 24 * 1024 * 1024), logs: { 'app.log': text(2, 2_000_000) }, 'x.txt': 'x' });
    // From noon: 20 s of test at 600× are ~3 h of schedules, clear of the 00:00 backup and the 03:30 prune.
    const d = await daemon(sb, fastSchedules(600));

    // A schedule fires.
    const scheduled = await waitFor('a scheduled backup', async () => {
      const jobs = await sb.json<{ id: number; kind: string; group: string; state: string; trigger: string }[]>(['jobs']);
      return jobs.find((j) => j.group === 'sched' && j.trigger === 'scheduled' && j.state === 'completed');
    });
    expect(scheduled.kind).toBe('backup');
    const status = await sb.json<{ daemon: { pid: number }; schedules: { kind: string; group: string }[] }>(['status']);
    expect(status.daemon.pid).toBe(d.pid);
    expect(status.schedules).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'disk', group: 'big' }), expect.objectContaining({ kind: 'prune' })]));

    // An ad hoc backup over the socket, held in its pre command, followed live by `jobs --follow`.
    await writeFile(hold, '');
    const backup = runCli(['backup', 'big', '--json', '--config', sb.config]);
    const running = await waitFor('the ad hoc backup to run', async () => {
      const s = await sb.json<{ running: { id: number; group: string; trigger: string }[] }>(['status']);
      return s.running.find((j) => j.group === 'big');
    });
    expect(running.trigger).toBe('ad hoc');
    const follower = spawnCli(['jobs', String(running.id), '--follow', '--json', '--config', sb.config]);
    let followed = '';
    follower.stdout!.on('data', (c: Buffer) => (followed += c.toString()));
    const followExit = new Promise<number | null>((resolve) => follower.on('close', (code) => resolve(code)));
    cleanups.push(async () => void follower.kill('SIGKILL'));
    // Attached: it shows the job in its pre command at once. Then the job may go on.
    await waitFor('the follower to attach', () => followed.includes('\n'));
    await rm(hold);
    expect(await followExit).toBe(0);
    const events = followed.trim().split('\n').map((l) => JSON.parse(l) as { type: string; progress?: { done: number; unit: string; label: string }; state?: string });
    expect(events[0]).toMatchObject({ type: 'progress', progress: { label: `backup ${path.join(sb.dir, 'data', 'big')}: pre command`, done: 0, unit: 'bytes' } });
    expect(events.at(-1)).toMatchObject({ type: 'end', state: 'completed' });
    const b = await backup;
    expect(b.code, b.stderr).toBe(0);
    const result = JSON.parse(b.stdout);
    // The same JSON as in-process: the job, its sources, and the recovery point.
    expect(Object.keys(result).sort()).toEqual(['group', 'jobId', 'recoveryPoint', 'sources', 'state']);
    expect(result).toMatchObject({ jobId: running.id, group: 'big', state: 'completed', recoveryPoint: { id: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(result.recoveryPoint.stats.files).toBe(3);

    // A second job of the same group while one runs (held in its pre command): refused, clearly.
    await writeFile(hold, '');
    const held = runCli(['backup', 'big', '--config', sb.config]);
    await waitFor('the second backup to run', async () => (await sb.json<{ running: { group: string }[] }>(['status'])).running.some((j) => j.group === 'big'));
    const refused = await sb.strata(['backup', 'big']);
    await rm(hold);
    expect(refused.code).toBe(1);
    oneErrorLine(refused.stderr, 'STRATA_JOB_RUNNING');
    expect(refused.stderr).toMatch(/another job is in progress: backup of protection group "big"/);
    const h = await held;
    expect(h.code, h.stderr).toBe(0);

    // A restore over the socket (relative target resolved by the CLI), and its conflict error unchanged.
    const target = path.join(sb.dir, 'restored');
    const restore = await runCli(['restore', 'latest', '--group', 'big', '--target', 'restored', '--json', '--config', sb.config], { cwd: sb.dir });
    expect(restore.code, restore.stderr).toBe(0);
    expect(JSON.parse(restore.stdout)).toMatchObject({ files: 3, recoveryPoint: expect.any(String), jobId: expect.any(Number) });
    expect(await digestTree(target)).toEqual(await digestTree(path.join(sb.dir, 'data', 'big')));
    const conflict = await sb.strata(['restore', 'latest', '--group', 'big', '--target', target]);
    expect(conflict.code).toBe(2);
    oneErrorLine(conflict.stderr, 'STRATA_RESTORE_CONFLICT');

    // The history names the trigger of each job the daemon ran.
    const jobs = await sb.json<{ kind: string; group: string; trigger: string | null; state: string }[]>(['jobs', '--limit', '100']);
    expect(jobs.filter((j) => j.kind === 'restore' && j.trigger === 'ad hoc').map((j) => j.state)).toEqual(['failed', 'completed']);

    const stopped = await d.stop('SIGTERM');
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(10_000);
  });

  it('SIGTERM mid-backup abandons the job cleanly; after a restart the next run completes and check --read-data passes', async () => {
    const sb = await sandbox({ protectionGroups: [{ name: 'big', sources: [{ path: 'data' }], disk: DAILY }] });
    const data = path.join(sb.dir, 'data');
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 32; i++) files[`f${i}.bin`] = bytes(100 + i, 16 * 1024 * 1024);
    await writeTree(data, files);
    const d = await daemon(sb);
    const client = new ControlClient(path.join(sb.state, 'strata.sock'));
    const backup = runCli(['backup', 'big', '--config', sb.config]);
    await waitFor(
      'the backup to be under way',
      async () => {
        const s = await client.request<{ running: { group: string; current: { done: number } | null }[] }>('GET', '/status');
        return s.running.some((j) => j.group === 'big' && (j.current?.done ?? 0) > 0);
      },
      { everyMs: 10 },
    );
    const stopped = await d.stop('SIGTERM');
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(10_000);
    const aborted = await backup;
    expect(aborted.code).toBe(1);
    oneErrorLine(aborted.stderr, 'STRATA_ABORTED');

    // Nothing half-written in the pool, no recovery point, the job recorded as interrupted, the socket gone.
    const temps: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(path.join(dir, e.name));
        else if (e.name.startsWith('.tmp-')) temps.push(e.name);
      }
    };
    await walk(sb.pool);
    expect(temps).toEqual([]);
    await expect(stat(path.join(sb.state, 'strata.sock'))).rejects.toThrow();
    expect(await sb.json(['recovery-points'])).toEqual([]);
    const jobs = await sb.json<{ kind: string; state: string }[]>(['jobs']);
    expect(jobs[0]).toMatchObject({ kind: 'backup', state: 'interrupted' });

    const again = await daemon(sb);
    const done = await sb.json<{ state: string; recoveryPoint: { id: string } }>(['backup', 'big']);
    expect(done.state).toBe('completed');
    const check = await sb.json<{ ok: boolean }>(['check', '--read-data']);
    expect(check.ok).toBe(true);
    const target = path.join(sb.dir, 'restored');
    await sb.json(['restore', done.recoveryPoint.id, '--target', target]);
    expect(await digestTree(target)).toEqual(await digestTree(data));
    expect((await again.stop()).code).toBe(0);
  }, 120_000);

  it('backs up a SQLite database under write load consistently', async () => {
    const sb = await sandbox({ protectionGroups: [{ name: 'db', sources: [{ path: 'app.db', type: 'sqlite' }], disk: DAILY }] });
    const dbFile = path.join(sb.dir, 'app.db');
    const setup = new Database(dbFile);
    setup.pragma('journal_mode = WAL');
    setup.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL, sum INTEGER NOT NULL); CREATE INDEX t_sum ON t(sum);');
    setup.close();
    // A writer inserting rows in transactions, one every 2 ms, for at most 20 s.
    const writerJs = path.join(sb.dir, 'writer.mjs');
    await writeFile(
      writerJs,
      `import Database from ${JSON.stringify(path.join(REPO, 'node_modules', 'better-sqlite3', 'lib', 'index.js'))};
       const db = new Database(process.argv[2]); db.pragma('busy_timeout = 10000');
       const ins = db.prepare('INSERT INTO t(body, sum) VALUES (?, ?)');
       const tx = db.transaction((n) => { for (let i = 0; i < 50; i++) ins.run('row ' + n + '-' + i + ' '.repeat(200), n * 50 + i); });
       const end = Date.now() + 20000; let n = 0; console.log('ready');
       const pause = new Int32Array(new SharedArrayBuffer(4));
       while (Date.now() < end) { tx(n++); Atomics.wait(pause, 0, 0, 2); }`,
    );
    const writer = spawn(process.execPath, [writerJs, dbFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanups.push(async () => writer.kill('SIGKILL'));
    await new Promise((r) => writer.stdout!.once('data', r));
    const d = await daemon(sb);
    await new Promise((r) => setTimeout(r, 500)); // let the writer get going
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await sb.json<{ state: string; recoveryPoint: { id: string } }>(['backup', 'db']));
    writer.kill('SIGKILL');
    for (const [i, r] of results.entries()) {
      expect(r.state).toBe('completed');
      const target = path.join(sb.dir, `restored-${i}`);
      await sb.json(['restore', r.recoveryPoint.id, '--target', target]);
      const copy = new Database(path.join(target, 'app.db'), { readonly: true });
      expect(copy.pragma('integrity_check', { simple: true })).toBe('ok');
      const { n, s } = copy.prepare('SELECT count(*) AS n, max(sum) AS s FROM t').get() as { n: number; s: number };
      copy.close();
      expect(n).toBeGreaterThan(0);
      expect(n % 50).toBe(0); // whole transactions only
      expect(s).toBe(n - 1);
    }
    await d.stop();
  }, 90_000);

  it('refuses a bad config, a bad cron, a second daemon, and says so when no daemon answers', async () => {
    const sb = await sandbox({ protectionGroups: [{ name: 'g', sources: [{ path: 'data' }], disk: DAILY }] });
    await writeTree(path.join(sb.dir, 'data'), { 'a.txt': 'a' });

    // No daemon: commands that need it say so in one line; backup runs in-process.
    for (const args of [['status'], ['jobs', '--follow', '1']]) {
      const r = await sb.strata(args);
      expect(r.code).toBe(1);
      oneErrorLine(r.stderr, 'STRATA_DAEMON_NOT_RUNNING');
      expect(r.stderr).toContain(path.join(sb.state, 'strata.sock'));
    }
    expect((await sb.json<{ state: string }>(['backup', 'g'])).state).toBe('completed');
    expect((await sb.json<unknown[]>(['jobs'])).length).toBe(1); // history from the catalog

    const d = await daemon(sb);
    const second = await runCli(['daemon', '--config', sb.config], { timeoutMs: 30_000 });
    expect(second.code).toBe(2);
    oneErrorLine(second.stderr, 'STRATA_DAEMON_RUNNING');
    expect(second.stderr).toContain(`pid ${d.pid}`);

    // A daemon killed -9 leaves its socket and pid file: the CLI falls back to in-process, and a new daemon starts.
    await d.stop('SIGKILL');
    expect((await stat(path.join(sb.state, 'strata.sock'))).isSocket()).toBe(true);
    const stale = await sb.strata(['status']);
    oneErrorLine(stale.stderr, 'STRATA_DAEMON_NOT_RUNNING');
    expect(stale.stderr).toMatch(/nothing answers/);
    expect((await sb.json<{ state: string }>(['backup', 'g'])).state).toBe('completed');
    const next = await daemon(sb);
    expect((await sb.json<{ daemon: { pid: number } }>(['status'])).daemon.pid).toBe(next.pid);
    await next.stop();

    // Bad config and bad cron: one line naming the key.
    const bad = JSON.parse(await import('node:fs/promises').then((fs) => fs.readFile(sb.config, 'utf8')));
    await writeFile(sb.config, JSON.stringify({ ...bad, protectionGroups: [{ ...bad.protectionGroups[0], disk: { syncFrequency: '*/5 * * * *', retentionDays: 3 } }] }));
    const cron = await runCli(['daemon', '--config', sb.config], { timeoutMs: 30_000 });
    expect(cron.code).toBe(2);
    oneErrorLine(cron.stderr, 'STRATA_CONFIG_INVALID');
    expect(cron.stderr).toMatch(/protectionGroups\[0\]\.disk\.syncFrequency "\*\/5 \* \* \* \*" runs every 5 minutes; allowed: every 15 minutes to every 24 hours/);
    await writeFile(sb.config, JSON.stringify({ ...bad, protectionGroups: [{ ...bad.protectionGroups[0], disk: { syncFrequency: '0 25 * * *', retentionDays: 3 } }] }));
    const cron2 = await runCli(['daemon', '--config', sb.config], { timeoutMs: 30_000 });
    oneErrorLine(cron2.stderr, 'STRATA_CONFIG_INVALID');
    expect(cron2.stderr).toMatch(/syncFrequency must be a cron expression.*hour field "25": 25 is out of range 0-23/);
    await writeFile(sb.config, JSON.stringify({ ...bad, shedule: 'typo' }));
    const unknown = await runCli(['daemon', '--config', sb.config], { timeoutMs: 30_000 });
    expect(unknown.code).toBe(2);
    oneErrorLine(unknown.stderr, 'STRATA_CONFIG_INVALID');
    expect(unknown.stderr).toMatch(/shedule is not a known key/);
  }, 120_000);
});
