import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StrataConfig } from '../config/types.js';
import { StrataError } from '../errors.js';
import { AgentContext } from './context.js';
import { ControlClient } from './control-client.js';
import { pidFileOf, startDaemon, type DaemonHandle } from './daemon.js';
import { initPool } from './jobs.js';
import { processClock } from '../clock.js';
import { scaledClock } from './scheduler-runner.js';
import { noonToday } from '../../test/helpers/daemon.js';

/**
 * startDaemon with its schedules read on a clock that starts at noon today: the group's daily 00:00
 * backup never fires in a test, whatever the time of day it runs.
 */
function startTestDaemon(cfg: StrataConfig, options: Parameters<typeof startDaemon>[1] = {}): ReturnType<typeof startDaemon> {
  return startDaemon(cfg, { scheduleClock: scaledClock(processClock(), 1, noonToday()), ...options });
}

let dir: string;
let config: StrataConfig;
let handle: DaemonHandle | null;

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'strata-daemon-'));
  config = {
    stateDir: path.join(dir, 'state'),
    pool: path.join(dir, 'pool'),
    scratch: path.join(dir, 'scratch'),
    passphraseFile: path.join(dir, 'pass'),
    protectionGroups: [{ name: 'g', sources: [{ path: path.join(dir, 'data') }], disk: { syncFrequency: '0 0 * * *', retentionDays: 7 } }],
    subscription: { provider: 'static', state: 'active' },
  };
  writeFileSync(config.passphraseFile, 'correct horse battery staple 42\n', { mode: 0o600 });
  mkdirSync(config.stateDir, { mode: 0o755 });
  const ctx = new AgentContext(config);
  await initPool(ctx);
  ctx.close();
  handle = null;
});
afterEach(async () => {
  await handle?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<StrataError> {
  try {
    await p;
  } catch (err) {
    return err as StrataError;
  }
  throw new Error('expected a rejection');
}

describe('startDaemon', () => {
  it('serves the control API on a 0600 socket in a 0700 state directory, one daemon per state directory', async () => {
    handle = await startTestDaemon(config, { pruneSchedule: null });
    expect(statSync(config.stateDir).mode & 0o777).toBe(0o700);
    expect(statSync(handle.socketPath).mode & 0o777).toBe(0o600);
    const client = new ControlClient(handle.socketPath);
    const status = await client.request<{ daemon: { pid: number }; running: unknown[] }>('GET', '/status');
    expect(status.daemon.pid).toBe(process.pid);
    expect(status.running).toEqual([]);

    const second = await rejection(startTestDaemon(config));
    expect(second.code).toBe('STRATA_DAEMON_RUNNING');
    expect(second.message).toContain(`pid ${process.pid}`);

    const notFound = await rejection(client.request('GET', '/nope'));
    expect([notFound.code, notFound.kind]).toEqual(['STRATA_API_NOT_FOUND', 'usage']);
    const unknownGroup = await rejection(client.request('POST', '/backup', { group: 'nope' }));
    expect([unknownGroup.code, unknownGroup.kind]).toEqual(['STRATA_GROUP_UNKNOWN', 'usage']);
    expect(unknownGroup.message).toMatch(/no protection group "nope".*known: g/);
    const relative = await rejection(client.request('POST', '/restore', { recoveryPoint: 'latest', target: 'rel' }));
    expect(relative.code).toBe('STRATA_API_BAD_REQUEST');
    const noJob = await rejection(client.request('GET', '/jobs/999'));
    expect(noJob.code).toBe('STRATA_JOB_NOT_FOUND');

    // A prune runs alone: a second job while it runs is refused.
    const first = handle.runner.prune({ dryRun: true }, { trigger: 'ad hoc' });
    const refused = await rejection(handle.runner.prune({}, { trigger: 'ad hoc' }));
    expect(refused.code).toBe('STRATA_JOB_RUNNING');
    expect(refused.message).toMatch(/another job is in progress: prune --dry-run of the pool/);
    const { jobId, done } = await first;
    await done;
    // A finished job's events: its end.
    const events: unknown[] = [];
    await client.stream('GET', `/jobs/${jobId}/events`, undefined, (e) => events.push(e));
    expect(events).toEqual([expect.objectContaining({ type: 'end', jobId, state: 'completed' })]);
    const jobs = await client.request<{ id: number; kind: string; trigger: string }[]>('GET', '/jobs');
    expect(jobs[0]).toMatchObject({ id: jobId, kind: 'prune --dry-run', trigger: 'ad hoc' });

    await handle.stop();
    handle = null;
    expect(existsSync(path.join(config.stateDir, 'strata.sock'))).toBe(false);
    expect(existsSync(pidFileOf(config.stateDir))).toBe(false);
    const gone = await rejection(client.request('GET', '/status'));
    expect(gone.code).toBe('STRATA_DAEMON_NOT_RUNNING');
  });

  it('runs a check as a job: recorded, followable, one at a time, and never beside a prune', async () => {
    handle = await startTestDaemon(config, { pruneSchedule: null });
    const events: { type: string; state?: string }[] = [];
    const started = await handle.runner.check({ readData: true }, { trigger: 'ad hoc', listener: (e) => events.push(e) });
    const second = await rejection(handle.runner.check({}, { trigger: 'ad hoc' }));
    expect(second.code).toBe('STRATA_JOB_RUNNING');
    const prune = await rejection(handle.runner.prune({}, { trigger: 'ad hoc' }));
    expect(prune.code).toBe('STRATA_JOB_RUNNING');
    expect(prune.message).toMatch(/check --read-data/);
    const report = await started.done;
    expect(report.ok).toBe(true);
    expect(events.at(-1)).toMatchObject({ type: 'end', state: 'completed' });
    expect(handle.runner.get(started.jobId)).toMatchObject({ kind: 'check --read-data', state: 'completed', trigger: 'ad hoc', live: false });
  });

  it('keeps what started each job across a restart', async () => {
    handle = await startTestDaemon(config, { pruneSchedule: null });
    const scheduled = await handle.runner.prune({ dryRun: true }, { trigger: 'scheduled' });
    await scheduled.done;
    const adHoc = await handle.runner.check({}, { trigger: 'ad hoc' });
    await adHoc.done;
    await handle.stop();
    handle = await startTestDaemon(config, { pruneSchedule: null });
    expect(handle.runner.get(scheduled.jobId)).toMatchObject({ kind: 'prune --dry-run', trigger: 'scheduled' });
    const jobs = await new ControlClient(handle.socketPath).request<{ id: number; trigger: string }[]>('GET', '/jobs');
    expect(jobs.find((j) => j.id === adHoc.jobId)?.trigger).toBe('ad hoc');
  });

  it('recovers from a crashed daemon: stale pid file replaced, its jobs marked interrupted, old temporary files removed', async () => {
    writeFileSync(pidFileOf(config.stateDir), '999999\n');
    const ctx = new AgentContext(config);
    const crashed = ctx.catalog().createJob('backup', 'g', Date.now(), { pid: 999999 });
    ctx.close();
    const packDir = path.join(config.pool, 'packs', 'ab');
    mkdirSync(packDir, { recursive: true });
    const old = path.join(packDir, '.tmp-0123456789abcdef');
    const fresh = path.join(packDir, '.tmp-fedcba9876543210');
    writeFileSync(old, 'half a pack');
    writeFileSync(fresh, 'a pack being written by a CLI job');
    const tenMinutesAgo = new Date(Date.now() - 10 * 60_000);
    utimesSync(old, tenMinutesAgo, tenMinutesAgo);

    handle = await startTestDaemon(config, { pruneSchedule: null });
    expect(handle.ctx.catalog().job(crashed)).toMatchObject({ state: 'interrupted' });
    expect(existsSync(old)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
  });

  it('stops when its signal is aborted', async () => {
    const controller = new AbortController();
    handle = await startTestDaemon(config, { signal: controller.signal, pruneSchedule: null });
    controller.abort();
    await handle.stopped;
    expect(existsSync(path.join(config.stateDir, 'strata.sock'))).toBe(false);
    handle = null;
  });
});
