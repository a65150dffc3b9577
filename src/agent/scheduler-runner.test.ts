import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../clock.js';
import type { StrataConfig } from '../config/types.js';
import { StrataError } from '../errors.js';
import { AgentContext } from './context.js';
import type { JobRunner } from './job-runner.js';
import { SchedulerRunner, scaledClock } from './scheduler-runner.js';

let dir: string;
let ctx: AgentContext;
let clock: FakeClock;
let scheduler: SchedulerRunner | null;

function setup(start: string, groups: StrataConfig['protectionGroups'], timezone = 'UTC'): void {
  clock = new FakeClock(Date.parse(start));
  const config: StrataConfig = {
    stateDir: path.join(dir, 'state'),
    pool: path.join(dir, 'pool'),
    scratch: path.join(dir, 'scratch'),
    passphraseFile: path.join(dir, 'pass'),
    protectionGroups: groups,
    subscription: { provider: 'static', state: 'active' },
    timezone,
  };
  ctx = new AgentContext(config, { clock });
}

const group = (name: string, cron = '*/15 * * * *', online?: string) => ({
  name,
  sources: [{ path: '/data' }],
  disk: { syncFrequency: cron, retentionDays: 7 },
  ...(online ? { online: { schedule: online, retention: { daily: 7 } } } : {}),
});

function fakeRunner(impl: { backup?: (...a: unknown[]) => Promise<unknown>; prune?: (...a: unknown[]) => Promise<unknown> } = {}) {
  const runner = {
    backup: vi.fn(impl.backup ?? (async () => ({ jobId: 1, done: Promise.resolve() }))),
    prune: vi.fn(impl.prune ?? (async () => ({ jobId: 1, done: Promise.resolve() }))),
  };
  return runner;
}

/** Lets the loops run after the clock moved (their sleeps resolve in microtasks). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

async function advance(ms: number): Promise<void> {
  clock.advance(ms);
  await settle();
}

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'strata-sched-'));
  scheduler = null;
});
afterEach(async () => {
  await scheduler?.stop();
  ctx?.close();
  rmSync(dir, { recursive: true, force: true });
});

const MIN = 60_000;

describe('SchedulerRunner', () => {
  it('starts each scheduled run at its time, on the injected clock', async () => {
    setup('2030-01-01T00:05:00Z', [group('g')]);
    const runner = fakeRunner();
    scheduler = new SchedulerRunner(ctx, { runner: runner as unknown as JobRunner, pruneSchedule: null });
    scheduler.start();
    await advance(9 * MIN);
    expect(runner.backup).not.toHaveBeenCalled();
    await advance(1 * MIN);
    expect(runner.backup).toHaveBeenCalledTimes(1);
    expect(runner.backup).toHaveBeenCalledWith({ group: 'g', to: 'disk' }, { trigger: 'scheduled' });
    await advance(15 * MIN);
    expect(runner.backup).toHaveBeenCalledTimes(2);
    expect(scheduler.upcoming()).toEqual([{ kind: 'disk', group: 'g', cron: '*/15 * * * *', due: Date.parse('2030-01-01T00:45:00Z') }]);
  });

  it('records the runs missed while the daemon was down as skipped, and replays none', async () => {
    setup('2030-01-01T00:05:00Z', [group('g')]);
    ctx.catalog().setState('schedule:disk:g', Date.parse('2029-12-31T23:05:00Z'));
    const runner = fakeRunner();
    scheduler = new SchedulerRunner(ctx, { runner: runner as unknown as JobRunner, pruneSchedule: null });
    scheduler.start();
    await settle();
    expect(runner.backup).not.toHaveBeenCalled();
    const jobs = ctx.catalog().jobs();
    expect(jobs.map((j) => [j.kind, j.group, j.state, new Date(j.started).toISOString()])).toEqual(
      ['00:00', '23:45', '23:30', '23:15'].map((t) => ['backup', 'g', 'skipped', t === '00:00' ? '2030-01-01T00:00:00.000Z' : `2029-12-31T${t}:00.000Z`]),
    );
    expect(jobs[0]!.error).toMatch(/^missed while the daemon was not running \(due 2030-01-01T00:00:00.000Z\)$/);
    // A restart right away records nothing twice.
    await scheduler.stop();
    scheduler = new SchedulerRunner(ctx, { runner: runner as unknown as JobRunner, pruneSchedule: null });
    scheduler.start();
    await settle();
    expect(ctx.catalog().jobs()).toHaveLength(4);
  });

  it('after the machine slept through several runs, records them as missed and runs only the current one', async () => {
    setup('2030-01-01T00:05:00Z', [group('g')]);
    const runner = fakeRunner();
    scheduler = new SchedulerRunner(ctx, { runner: runner as unknown as JobRunner, pruneSchedule: null });
    scheduler.start();
    await advance(2 * 60 * MIN + 10 * MIN); // to 02:15
    expect(runner.backup).toHaveBeenCalledTimes(1);
    expect(ctx.catalog().jobs().filter((j) => j.state === 'skipped')).toHaveLength(8); // 00:15 … 02:00; 02:15 ran
  });

  it('records a run refused because the group is busy as skipped, not queued; a gate refusal is recorded once, by the job', async () => {
    setup('2030-01-01T00:05:00Z', [group('g')]);
    let refusal = new StrataError('STRATA_JOB_RUNNING', 'another job is in progress: backup of protection group "g" (job 7)', { kind: 'failed' });
    const runner = fakeRunner({
      backup: async () => {
        throw refusal;
      },
    });
    const runs: string[] = [];
    scheduler = new SchedulerRunner(ctx, { runner: runner as unknown as JobRunner, pruneSchedule: null, onRun: (r) => runs.push(`${r.outcome}: ${r.reason}`) });
    scheduler.start();
    await advance(10 * MIN);
    refusal = new StrataError('STRATA_GATE_REFUSED', 'backup to disk stopped: the subscription expired', { kind: 'gate' });
    await advance(15 * MIN);
    expect(runner.backup).toHaveBeenCalledTimes(2);
    const skipped = ctx.catalog().jobs();
    expect(skipped.map((j) => [j.state, j.error])).toEqual([['skipped', 'STRATA_JOB_RUNNING: another job is in progress: backup of protection group "g" (job 7)']]);
    expect(runs).toEqual([
      'skipped: STRATA_JOB_RUNNING: another job is in progress: backup of protection group "g" (job 7)',
      'skipped: STRATA_GATE_REFUSED: backup to disk stopped: the subscription expired',
    ]);
  });

  it('an online run waits for the group\'s running job instead of being skipped', async () => {
    setup('2030-01-01T20:55:00Z', [group('g', '0 0 * * *', '0 21 * * *')]);
    let busy = true;
    const runner = fakeRunner({
      backup: async () => {
        if (busy) throw new StrataError('STRATA_JOB_RUNNING', 'another job is in progress', { kind: 'failed' });
        return { jobId: 2, done: Promise.resolve() };
      },
    });
    const runs: string[] = [];
    scheduler = new SchedulerRunner(ctx, { runner: runner as unknown as JobRunner, pruneSchedule: null, onRun: (r) => runs.push(`${r.kind} ${r.outcome}`) });
    scheduler.start();
    await advance(5 * MIN);
    expect(runner.backup).toHaveBeenCalledWith({ group: 'g', to: 'cloud' }, { trigger: 'scheduled' });
    busy = false;
    await advance(1 * MIN);
    expect(runs).toEqual(['online started']);
    expect(ctx.catalog().jobs()).toEqual([]);
  });

  it('runs a daily schedule once a day across a daylight-saving change', async () => {
    setup('2030-03-29T12:00:00Z', [group('g', '30 2 * * *')], 'Europe/Paris');
    const runner = fakeRunner();
    const due: string[] = [];
    scheduler = new SchedulerRunner(ctx, { runner: runner as unknown as JobRunner, pruneSchedule: null, onRun: (r) => due.push(new Date(r.due).toISOString()) });
    scheduler.start();
    for (let day = 0; day < 4; day++) {
      clock.set(scheduler.upcoming()[0]!.due);
      await settle();
    }
    // 02:30 does not exist on 31 March in Paris: that day's run is at 03:30 local (01:30Z).
    expect(due).toEqual(['2030-03-30T01:30:00.000Z', '2030-03-31T01:30:00.000Z', '2030-04-01T00:30:00.000Z', '2030-04-02T00:30:00.000Z']);
    expect(runner.backup).toHaveBeenCalledTimes(4);
  });

  it('scaledClock runs faster from its origin', async () => {
    const base = new FakeClock(1000);
    const fast = scaledClock(base, 600);
    base.advance(1000);
    expect(fast.now()).toBe(1000 + 600_000);
    const noon = Date.parse('2030-06-01T12:00:00Z');
    const fromNoon = scaledClock(base, 600, noon);
    base.advance(1000);
    expect(fromNoon.now()).toBe(noon + 600_000);
  });
});
