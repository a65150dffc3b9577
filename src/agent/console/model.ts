// What the console's pages show, read from the daemon's parts: the gate (without probing the vault),
// the catalog, the job runner, the scheduler, and the file systems of the pool and the scratch area.
// Pages (pages.ts) render these models and read nothing themselves.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { RecoveryPointRow } from '../../catalog/catalog.js';
import type { ProtectionGroupConfig } from '../../config/types.js';
import { BlobReader } from '../../replica/blob-reader.js';
import type { TreeNode } from '../../replica/tree.js';
import { defaultTimeZone } from '../../scheduler/schedule.js';
import type { AgentContext } from '../context.js';
import type { JobProgress, JobRunner, JobView } from '../job-runner.js';
import { collectMetrics, type MetricsSnapshot } from '../metrics.js';
import type { ScheduledRun, SchedulerRunner } from '../scheduler-runner.js';
import { gateStatus, type GateStatus } from '../vault.js';

export interface ConsoleDeps {
  ctx: AgentContext;
  runner: JobRunner;
  scheduler: SchedulerRunner;
}

export interface FsUsage {
  path: string;
  /** Of the file system holding `path`; null when it cannot be read. */
  total: number | null;
  free: number | null;
  /** What strata itself keeps there. */
  used: number;
  error?: string;
}

/** A job running now, as the console shows it. */
export interface RunningJob {
  id: number;
  kind: string;
  group: string | null;
  started: number;
  progress: JobProgress | null;
  /** Bytes (or items) per second, when known. */
  rate: number | null;
}

export interface Common {
  now: number;
  tz: string;
  host: string;
}

export interface OverviewModel extends Common {
  gate: GateStatus | null;
  gateError: string | null;
  figures: MetricsSnapshot;
  pool: FsUsage;
  scratch: FsUsage;
  groups: { name: string; lastJob: JobView | null; latest: RecoveryPointRow | null; next: number | null }[];
  running: RunningJob[];
}

export interface GroupModel {
  config: ProtectionGroupConfig;
  next: (ScheduledRun & { cron: string })[];
  lastJob: JobView | null;
  diskPoints: number;
  cloudPoints: number;
  latest: RecoveryPointRow | null;
}

export interface GroupsModel extends Common {
  gate: GateStatus | null;
  gateError: string | null;
  groups: GroupModel[];
  pruneNext: number | null;
}

export interface RecoveryPointsModel extends Common {
  groups: { name: string; configured: boolean; points: RecoveryPointRow[] }[];
  selected: string | null;
}

export interface RecoveryPointModel extends Common {
  rp: RecoveryPointRow;
  /** The directory listed (relative to the point's root, "" for the root) and its entries, or why not. */
  dir: string;
  entries: TreeNode[] | null;
  listError: string | null;
  gate: GateStatus | null;
}

export interface JobsModel extends Common {
  running: RunningJob[];
  history: JobView[];
}

export function timeZoneOf(deps: ConsoleDeps): string {
  return deps.ctx.config.timezone ?? defaultTimeZone();
}

function common(deps: ConsoleDeps): Common {
  return { now: deps.ctx.clock.now(), tz: timeZoneOf(deps), host: deps.ctx.host };
}

async function gateOrError(deps: ConsoleDeps): Promise<{ gate: GateStatus | null; gateError: string | null }> {
  try {
    return { gate: await gateStatus(deps.ctx, { probe: false }), gateError: null };
  } catch (err) {
    return { gate: null, gateError: (err as Error).message };
  }
}

/** Bytes in files under `dir`, walking at most `maxEntries` entries (the scratch area is small; a bound keeps a page fast anyway). */
export async function directoryBytes(dir: string, maxEntries = 20_000): Promise<number> {
  let total = 0;
  let seen = 0;
  const walk = async (d: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fs.readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (++seen > maxEntries) return;
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await fs.lstat(p).catch(() => null))?.size ?? 0;
    }
  };
  await walk(dir);
  return total;
}

async function fsUsage(dir: string, used: number): Promise<FsUsage> {
  try {
    const st = await fs.statfs(dir);
    return { path: dir, total: st.blocks * st.bsize, free: st.bavail * st.bsize, used };
  } catch (err) {
    return { path: dir, total: null, free: null, used, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
}

/** The last job of each group (the history is newest first). */
function lastJobs(history: JobView[]): Map<string, JobView> {
  const out = new Map<string, JobView>();
  for (const j of history) if (j.group && !out.has(j.group)) out.set(j.group, j);
  return out;
}

/** Tracks progress samples per running job to give a rate over the last seconds (rather than since the start). */
export class RateTracker {
  readonly #samples = new Map<number, { label: string; points: { t: number; done: number }[] }>();
  /** Window over which the rate is measured. */
  static readonly WINDOW_MS = 10_000;

  /** Records a sample and returns the rate (per second) over the window, or null before two samples half a second apart. */
  observe(jobId: number, progress: JobProgress, now: number): number | null {
    let s = this.#samples.get(jobId);
    if (!s || s.label !== progress.label) {
      s = { label: progress.label, points: [] };
      this.#samples.set(jobId, s);
      if (this.#samples.size > 64) this.#samples.delete(this.#samples.keys().next().value!);
    }
    const last = s.points.at(-1);
    if (!last || now > last.t) s.points.push({ t: now, done: progress.done });
    while (s.points.length > 2 && now - s.points[0]!.t > RateTracker.WINDOW_MS) s.points.shift();
    const first = s.points[0]!;
    const span = now - first.t;
    return span >= 500 ? Math.max(0, ((progress.done - first.done) * 1000) / span) : null;
  }

  forget(jobId: number): void {
    this.#samples.delete(jobId);
  }
}

/** The rate shown for a running job: measured over the last seconds when known, else the average since it started. */
export function rateOf(job: { id: number; started: number; progress: JobProgress | null }, now: number, rates: RateTracker): number | null {
  if (!job.progress) return null;
  const measured = rates.observe(job.id, job.progress, now);
  if (measured !== null) return measured;
  const elapsed = now - job.started;
  return elapsed >= 1000 ? (job.progress.done * 1000) / elapsed : null;
}

export function runningJobs(deps: ConsoleDeps, rates: RateTracker): RunningJob[] {
  const now = deps.ctx.clock.now();
  const out: RunningJob[] = deps.runner.running().map((j) => {
    const r = { id: j.id, kind: j.kind, group: j.group, started: j.started, progress: j.current };
    return { ...r, rate: rateOf(r, now, rates) };
  });
  return out;
}

export async function overviewModel(deps: ConsoleDeps, rates: RateTracker): Promise<OverviewModel> {
  const { ctx, runner, scheduler } = deps;
  const { gate, gateError } = await gateOrError(deps);
  const running = runningJobs(deps, rates);
  const figures = await collectMetrics(ctx, { jobsRunning: running.length });
  const history = runner.list(500);
  const last = lastJobs(history);
  const points = ctx.catalog().recoveryPoints();
  const upcoming = scheduler.upcoming();
  const groups = ctx.config.protectionGroups.map((g) => {
    const dues = upcoming.filter((u) => u.group === g.name).map((u) => u.due);
    return { name: g.name, lastJob: last.get(g.name) ?? null, latest: points.filter((p) => p.group === g.name).at(-1) ?? null, next: dues.length ? Math.min(...dues) : null };
  });
  const [pool, scratch] = await Promise.all([fsUsage(ctx.config.pool, figures.bytesStored.disk), directoryBytes(ctx.config.scratch).then((used) => fsUsage(ctx.config.scratch, used))]);
  return { ...common(deps), gate, gateError, figures, pool, scratch, groups, running };
}

export async function groupsModel(deps: ConsoleDeps): Promise<GroupsModel> {
  const { ctx, runner, scheduler } = deps;
  const { gate, gateError } = await gateOrError(deps);
  const last = lastJobs(runner.list(500));
  const points = ctx.catalog().recoveryPoints();
  const upcoming = scheduler.upcoming();
  return {
    ...common(deps),
    gate,
    gateError,
    pruneNext: upcoming.find((u) => u.kind === 'prune')?.due ?? null,
    groups: ctx.config.protectionGroups.map((g) => {
      const mine = points.filter((p) => p.group === g.name);
      return {
        config: g,
        next: upcoming.filter((u) => u.group === g.name),
        lastJob: last.get(g.name) ?? null,
        diskPoints: mine.filter((p) => p.diskState === 'present').length,
        cloudPoints: mine.filter((p) => p.cloudState === 'uploaded').length,
        latest: mine.at(-1) ?? null,
      };
    }),
  };
}

export function recoveryPointsModel(deps: ConsoleDeps, selected: string | null): RecoveryPointsModel {
  const { ctx } = deps;
  const points = ctx.catalog().recoveryPoints();
  const names = [...new Set([...ctx.config.protectionGroups.map((g) => g.name), ...points.map((p) => p.group)])];
  const configured = new Set(ctx.config.protectionGroups.map((g) => g.name));
  const groups = names
    .filter((n) => selected === null || n === selected)
    .map((name) => ({ name, configured: configured.has(name), points: points.filter((p) => p.group === name) }));
  return { ...common(deps), groups, selected };
}

/** Normalizes a path inside a recovery point: "a/b" without leading or trailing slashes; refuses "." and "..". */
export function cleanItemPath(p: string): string {
  const parts = p.split('/').filter((x) => x.length > 0);
  if (parts.some((x) => x === '.' || x === '..')) throw new Error(`"${p}" must be a path inside the recovery point, without "." or ".."`);
  return parts.join('/');
}

export async function recoveryPointModel(deps: ConsoleDeps, id: string, dir: string): Promise<RecoveryPointModel> {
  const { ctx } = deps;
  const rp = ctx.catalog().findRecoveryPoint(id);
  const { gate } = await gateOrError(deps);
  let entries: TreeNode[] | null = null;
  let listError: string | null = null;
  if (rp.diskState === 'present') {
    try {
      const pool = await ctx.pool();
      const reader = new BlobReader(pool.store, pool.keys, ctx.catalog().blobLookup());
      let tree = await reader.tree(rp.tree);
      for (const part of dir ? dir.split('/') : []) {
        const node = tree.nodes.find((n) => n.name === part);
        if (!node || node.type !== 'dir' || !node.subtree) throw new Error(`${dir} is not a directory in this recovery point`);
        tree = await reader.tree(node.subtree);
      }
      entries = tree.nodes;
    } catch (err) {
      listError = (err as Error).message;
    }
  } else {
    listError = 'this recovery point is not in the local pool; restore it from the cloud with `strata restore … --from cloud`';
  }
  return { ...common(deps), rp, dir, entries, listError, gate };
}

export function jobsModel(deps: ConsoleDeps, rates: RateTracker, limit = 100): JobsModel {
  return { ...common(deps), running: runningJobs(deps, rates), history: deps.runner.list(limit) };
}
