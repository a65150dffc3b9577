// Runs the protection groups' schedules: the disk `syncFrequency` (a backup to the pool) and the online
// `schedule` (the latest disk recovery point to the vault), plus a daily prune. Times come from src/scheduler/schedule.ts
// (pure, with its daylight-saving rules), never from node-cron's own timers; the loop sleeps on the
// injected Clock. Runs that fell due while nothing ran them (the daemon was down, the machine asleep)
// are recorded as skipped jobs, never replayed in a burst. A run refused (by the gate, or because the
// group's previous job is still going) is recorded as skipped too, not queued.
import type { Clock } from '../clock.js';
import type { ProtectionGroupConfig } from '../config/types.js';
import { StrataError, errorMessage } from '../errors.js';
import { defaultTimeZone, missedRuns, nextRun, parseCron } from '../scheduler/schedule.js';
import type { AgentContext } from './context.js';
import type { JobRunner } from './job-runner.js';

/** At most this long asleep at once, so a long wait re-reads the clock (suspend, clock changes, timer limits). */
const MAX_SLEEP_MS = 60 * 60 * 1000;
/** A run found due this late after its time (the process was stalled) still runs; later, it is recorded as missed. */
const LATE_GRACE_MS = 5 * 60 * 1000;
/** A scheduled online run or prune finding its group busy tries again this often, for this long. */
const RETRY_MS = 60 * 1000;
const PATIENCE_MS = 60 * 60 * 1000;
/** When the daily prune applies retention (read in the config's time zone). */
export const DEFAULT_PRUNE_SCHEDULE = '30 3 * * *';

export type ScheduleKind = 'disk' | 'online' | 'prune';

export interface ScheduledRun {
  kind: ScheduleKind;
  group: string | null;
  /** The cron time it was due (epoch ms). */
  due: number;
}

export interface SchedulerOptions {
  runner: JobRunner;
  /** The clock schedules are read on (default: the context's). Tests pass a FakeClock or a scaled clock. */
  clock?: Clock;
  /** Cron for the daily prune; null: no scheduled prune. Default DEFAULT_PRUNE_SCHEDULE. */
  pruneSchedule?: string | null;
  /** Called after each scheduled run was started or recorded as skipped (tests wait on it). */
  onRun?: (run: ScheduledRun & { outcome: 'started' | 'skipped' | 'missed'; reason?: string }) => void;
}

interface Entry {
  kind: ScheduleKind;
  group: ProtectionGroupConfig | null;
  cron: string;
}

function stateKey(e: Entry): string {
  return `schedule:${e.kind}:${e.group?.name ?? '*'}`;
}

/**
 * One loop per schedule. `start` records what was missed since each schedule's last accounted run
 * (kept in the catalog's state table), then sleeps until the next run; `stop` ends the loops (a job a
 * loop started keeps running: the job runner owns it).
 */
export class SchedulerRunner {
  readonly ctx: AgentContext;
  readonly #options: SchedulerOptions;
  readonly #clock: Clock;
  readonly #tz: string;
  readonly #controller = new AbortController();
  #loops: Promise<void>[] = [];

  constructor(ctx: AgentContext, options: SchedulerOptions) {
    this.ctx = ctx;
    this.#options = options;
    this.#clock = options.clock ?? ctx.clock;
    this.#tz = ctx.config.timezone ?? defaultTimeZone();
  }

  entries(): Entry[] {
    const out: Entry[] = [];
    for (const g of this.ctx.config.protectionGroups) {
      out.push({ kind: 'disk', group: g, cron: g.disk.syncFrequency });
      if (g.online) out.push({ kind: 'online', group: g, cron: g.online.schedule });
    }
    const prune = this.#options.pruneSchedule === undefined ? DEFAULT_PRUNE_SCHEDULE : this.#options.pruneSchedule;
    if (prune !== null) out.push({ kind: 'prune', group: null, cron: prune });
    for (const e of out) parseCron(e.cron); // a bad expression stops the start (the config loader has said which key)
    return out;
  }

  /** The next run of every schedule, for `status`. */
  upcoming(): (ScheduledRun & { cron: string })[] {
    const now = this.#clock.now();
    return this.entries().map((e) => ({ kind: e.kind, group: e.group?.name ?? null, cron: e.cron, due: nextRun(e.cron, now, this.#tz) }));
  }

  start(): void {
    const entries = this.entries();
    const now = this.#clock.now();
    for (const e of entries) {
      const catalog = this.ctx.catalog();
      const last = catalog.getState<number>(stateKey(e));
      if (last === undefined) catalog.setState(stateKey(e), now);
      else this.#recordMissed(e, missedRuns(e.cron, last, now, { tz: this.#tz }), now, 'missed while the daemon was not running');
    }
    this.#loops = entries.map((e) => this.#loop(e).catch((err) => this.ctx.log.error({ err, schedule: stateKey(e) }, 'a schedule loop stopped')));
  }

  async stop(): Promise<void> {
    this.#controller.abort(new StrataError('STRATA_ABORTED', 'the scheduler is stopping', { kind: 'failed' }));
    await Promise.allSettled(this.#loops);
  }

  #recordMissed(e: Entry, runs: number[], now: number, reason: string): void {
    if (runs.length === 0) return;
    const catalog = this.ctx.catalog();
    catalog.transaction(() => {
      for (const due of runs) catalog.recordSkippedJob(jobKind(e), e.group?.name ?? null, due, `${reason} (due ${new Date(due).toISOString()})`, 'scheduled');
      catalog.setState(stateKey(e), Math.max(now, runs.at(-1)!));
    });
    this.ctx.log.info({ schedule: stateKey(e), missed: runs.length }, 'scheduled runs recorded as missed');
    for (const due of runs) this.#options.onRun?.({ kind: e.kind, group: e.group?.name ?? null, due, outcome: 'missed', reason });
  }

  async #loop(e: Entry): Promise<void> {
    const signal = this.#controller.signal;
    while (!signal.aborted) {
      const last = this.ctx.catalog().getState<number>(stateKey(e)) ?? this.#clock.now();
      const due = nextRun(e.cron, last, this.#tz);
      try {
        for (let now = this.#clock.now(); now < due; now = this.#clock.now()) await this.#clock.sleep(Math.min(due - now, MAX_SLEEP_MS), signal);
      } catch {
        return; // stopped
      }
      const now = this.#clock.now();
      const runs = missedRuns(e.cron, last, now, { tz: this.#tz });
      const latest = runs.at(-1) ?? due;
      const late = now - latest > LATE_GRACE_MS;
      this.#recordMissed(e, late ? runs : runs.slice(0, -1), now, 'missed while the daemon was not running (the machine was asleep or stalled)');
      if (late) continue;
      this.ctx.catalog().setState(stateKey(e), latest);
      await this.#fire(e, latest);
    }
  }

  async #fire(e: Entry, due: number): Promise<void> {
    const group = e.group?.name ?? null;
    const report = (outcome: 'started' | 'skipped', reason?: string) => this.#options.onRun?.({ kind: e.kind, group, due, outcome, ...(reason ? { reason } : {}) });
    const skip = (reason: string, recorded = false) => {
      if (!recorded) this.ctx.catalog().recordSkippedJob(jobKind(e), group, this.ctx.clock.now(), reason, 'scheduled');
      this.ctx.log.info({ schedule: stateKey(e), reason }, 'scheduled run skipped');
      report('skipped', reason);
    };
    try {
      if (e.kind === 'disk') {
        await this.#options.runner.backup({ group: group!, to: 'disk' }, { trigger: 'scheduled' });
      } else {
        // An online run (the latest disk recovery point to the vault) and prune wait for the group's
        // (prune: every) running job, up to PATIENCE_MS, rather than being skipped: a disk sync often
        // falls at the same minute.
        for (let waited = 0; ; waited += RETRY_MS) {
          try {
            if (e.kind === 'prune') await this.#options.runner.prune({}, { trigger: 'scheduled' });
            else await this.#options.runner.backup({ group: group!, to: 'cloud' }, { trigger: 'scheduled' });
            break;
          } catch (err) {
            if (!(err instanceof StrataError && err.code === 'STRATA_JOB_RUNNING') || waited >= PATIENCE_MS) throw err;
            await this.#clock.sleep(RETRY_MS, this.#controller.signal);
          }
        }
      }
      report('started');
    } catch (err) {
      if (this.#controller.signal.aborted) return;
      const code = err instanceof StrataError ? err.code : 'STRATA_INTERNAL';
      // A gate refusal is recorded as a skipped job by the job itself (agent/vault.ts gateJob).
      skip(`${code}: ${errorMessage(err)}`, err instanceof StrataError && err.kind === 'gate');
    }
  }
}

function jobKind(e: Entry): string {
  return e.kind === 'disk' ? 'backup' : e.kind === 'online' ? 'backup --to cloud' : 'prune';
}

/**
 * A clock running `scale` times faster than `base` from the moment it is made, reading `start` then
 * (default: `base`'s time). Tests: a 15-minute schedule fires every 1.5 s at scale 600, and a chosen
 * start keeps the daily schedules out of the test's few scaled hours whatever the time of day (at 600×,
 * 20 s of a test are 3 h 20 min of schedule time: started at 23:45, a daily 00:00 schedule fired).
 * `STRATA_SCHEDULE_SCALE` and `STRATA_SCHEDULE_START` set them for the daemon's scheduler only.
 */
export function scaledClock(base: Clock, scale: number, start?: number): Clock {
  if (!(scale > 0) || (scale === 1 && start === undefined)) return base;
  const origin = base.now();
  const from = start ?? origin;
  return {
    now: () => from + (base.now() - origin) * scale,
    sleep: (ms, signal) => base.sleep(Math.max(1, ms / scale), signal),
    every: (ms, fn) => base.every(Math.max(1, ms / scale), fn),
  };
}
