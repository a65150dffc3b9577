// The daemon's job runner: runs backups, restores, checks and prunes in the background, at most one job
// per protection group at a time (a second one is refused with STRATA_JOB_RUNNING), one check at a time
// (under the pool's shared lock, so beside backups), prune alone; keeps
// live progress for followers; job history comes from the catalog's `jobs` table. The gate (and the
// registration rule) is applied by the jobs themselves (runBackup, runRestore) before they are recorded,
// so a refused job rejects `backup()`/`restore()` and never appears as started.
import path from 'node:path';
import type { JobRow, JobTrigger } from '../catalog/catalog.js';
import { StrataError } from '../errors.js';
import type { AgentContext } from './context.js';
import type { CheckReport } from '../replica/check.js';
import { backupLabel, backupSources } from './backup-sources.js';
import { runBackup, runCheck, runRestore, type BackupJobResult, type RestoreJobOptions } from './jobs.js';
import { errorChain } from './log.js';
import { runPrune, type DeletedObjects, type PruneJobResult } from './prune.js';

export type Trigger = JobTrigger;

/** Progress as the CLI's progress reporter shows it, plus the job's own detail. */
export interface JobProgress {
  label: string;
  done: number;
  total: number | null;
  unit: 'bytes' | 'items';
  detail?: unknown;
}

export interface ErrorPayload {
  code: string;
  message: string;
  kind: string;
}

export type JobEvent =
  | { type: 'started'; jobId: number; kind: string; group: string | null; trigger: Trigger }
  | { type: 'progress'; jobId: number; progress: JobProgress }
  | { type: 'file-error'; jobId: number; source: string; path: string; message: string }
  | { type: 'end'; jobId: number; state: string; result?: unknown; error?: ErrorPayload };

export type JobListener = (event: JobEvent) => void;

/** A job as the control API shows it: its catalog row, plus what only the running daemon knows. */
export interface JobView extends JobRow {
  live: boolean;
  /** Live progress while running (else the last progress the catalog recorded). */
  current: JobProgress | null;
  /** Files that could not be backed up, as "source: path: what". */
  failedFiles: string[];
}

interface LiveJob {
  key: string;
  kind: string;
  group: string | null;
  trigger: Trigger;
  jobId: number | null;
  controller: AbortController;
  listeners: Set<JobListener>;
  progress: JobProgress | null;
  failedFiles: string[];
  done: Promise<unknown>;
  onStarted: () => void;
}

export interface JobRunnerOptions {
  /** Called by every prune after its local deletions (the vault's soft delete). */
  onPruned?: (deleted: DeletedObjects, ctx: AgentContext) => Promise<void> | void;
  /** Minimum time between two progress events to followers. Default 250 ms. */
  progressEveryMs?: number;
}

export interface Started<R> {
  jobId: number;
  /** Settles when the job ends (rejects with its error). */
  done: Promise<R>;
}

export function errorPayload(err: unknown): ErrorPayload {
  if (err instanceof StrataError) return { code: err.code, message: err.message, kind: err.kind };
  const e = err as NodeJS.ErrnoException;
  const code = e?.code === 'ENOSPC' ? 'STRATA_DISK_FULL' : e?.code === 'EACCES' || e?.code === 'EPERM' ? 'STRATA_PERMISSION' : 'STRATA_INTERNAL';
  return { code, message: e?.message ?? String(err), kind: 'failed' };
}

/** Failed files recorded in a finished job's result (backup results list them per source). */
export function failedFilesOf(result: unknown): string[] {
  const sources = (result as { sources?: { source: string; warnings?: string[]; error?: { message: string } }[] } | null)?.sources;
  if (!Array.isArray(sources)) return [];
  return sources.flatMap((s) => [...(s.warnings ?? []).map((w) => `${s.source}: ${w}`), ...(s.error ? [`${s.source}: ${s.error.message}`] : [])]);
}

export class JobRunner {
  readonly ctx: AgentContext;
  readonly #options: JobRunnerOptions;
  /** Running jobs by key (a protection group, an ad hoc path, a restore target, or "prune"). */
  readonly #active = new Map<string, LiveJob>();
  readonly #byId = new Map<number, LiveJob>();

  constructor(ctx: AgentContext, options: JobRunnerOptions = {}) {
    this.ctx = ctx;
    this.#options = options;
  }

  get busy(): boolean {
    return this.#active.size > 0;
  }

  /** Starts a backup of a protection group or an ad hoc directory; resolves once it is recorded. */
  async backup(
    req: { group?: string; path?: string; exclude?: string[]; to?: 'disk' | 'cloud' | 'both' },
    options: { trigger: Trigger; listener?: JobListener },
  ): Promise<Started<BackupJobResult>> {
    const { group } = backupSources(this.ctx.config, req);
    const key = group ? `group:${group}` : `path:${path.resolve(req.path!)}`;
    const job = this.#claim(key, req.to === 'cloud' ? 'backup --to cloud' : 'backup', group || null, options.trigger, options.listener);
    return this.#start(job, () =>
      runBackup(this.ctx, {
        ...req,
        trigger: job.trigger,
        signal: job.controller.signal,
        onStarted: (id) => this.#started(job, id),
        onProgress: (p) => this.#progress(job, { label: backupLabel(p), done: p.bytes, total: p.totalBytes, unit: 'bytes', detail: p }),
        onFileError: (source, rel, message) => {
          job.failedFiles.push(`${source}: ${rel}: ${message}`);
          this.#emit(job, { type: 'file-error', jobId: job.jobId ?? 0, source, path: rel, message });
        },
      }),
    );
  }

  /** Starts a restore from the local pool; resolves once it is recorded. */
  async restore(req: Omit<RestoreJobOptions, 'signal' | 'onProgress' | 'onStarted'>, options: { listener?: JobListener } = {}) {
    const { catalog } = await this.ctx.poolAndCatalog();
    const rp = catalog.findRecoveryPoint(req.recoveryPoint, req.group);
    const key = rp.group ? `group:${rp.group}` : `restore:${path.resolve(req.target)}`;
    const job = this.#claim(key, 'restore', rp.group || null, 'ad hoc', options.listener);
    return this.#start(job, () =>
      runRestore(this.ctx, {
        ...req,
        recoveryPoint: rp.id,
        trigger: job.trigger,
        signal: job.controller.signal,
        onStarted: (id) => this.#started(job, id),
        onProgress: (p) => this.#progress(job, { label: 'restore', done: p.bytes, total: p.totalBytes, unit: 'bytes', detail: p }),
      }),
    );
  }

  /** Starts a check of the local pool (`readData`: every pack read and verified); one at a time. */
  async check(req: { readData?: boolean }, options: { trigger: Trigger; listener?: JobListener }): Promise<Started<CheckReport>> {
    const readData = req.readData ?? false;
    const job = this.#claim('check', readData ? 'check --read-data' : 'check', null, options.trigger, options.listener);
    return this.#start(job, () =>
      runCheck(this.ctx, {
        readData,
        trigger: job.trigger,
        signal: job.controller.signal,
        onStarted: (id) => this.#started(job, id),
        onProgress: (p) => this.#progress(job, { label: `check: ${p.phase}`, done: p.done, total: p.total, unit: 'items', detail: p }),
      }),
    );
  }

  /** Starts a prune (retention, then the pool); it runs alone. */
  async prune(req: { dryRun?: boolean }, options: { trigger: Trigger; listener?: JobListener }): Promise<Started<PruneJobResult>> {
    const running = [...this.#active.values()][0];
    if (running) throw this.#refusal(running, 'a prune runs alone');
    const job = this.#claim('prune', req.dryRun ? 'prune --dry-run' : 'prune', null, options.trigger, options.listener);
    return this.#start(job, () =>
      runPrune(this.ctx, {
        dryRun: req.dryRun ?? false,
        trigger: job.trigger,
        signal: job.controller.signal,
        onStarted: (id) => this.#started(job, id),
        onProgress: (p) => this.#progress(job, { label: `prune: ${p.phase}`, done: p.done, total: p.total, unit: 'items', detail: p }),
        ...(this.#options.onPruned ? { onDeleted: (d: DeletedObjects) => this.#options.onPruned!(d, this.ctx) } : {}),
      }),
    );
  }

  /** Follows a running job: the listener gets its last progress now, then every event until 'end'. Null if it is not running. */
  follow(jobId: number, listener: JobListener): (() => void) | null {
    const job = this.#byId.get(jobId);
    if (!job) return null;
    job.listeners.add(listener);
    if (job.progress) listener({ type: 'progress', jobId, progress: job.progress });
    return () => job.listeners.delete(listener);
  }

  isRunning(jobId: number): boolean {
    return this.#byId.has(jobId);
  }

  list(limit = 50): JobView[] {
    return this.ctx
      .catalog()
      .jobs(limit)
      .map((row) => this.#view(row));
  }

  /** The jobs running now (those already recorded), oldest first. */
  running(): JobView[] {
    return [...this.#byId.keys()]
      .sort((a, b) => a - b)
      .map((id) => this.get(id))
      .filter((j): j is JobView => j !== null);
  }

  get(jobId: number): JobView | null {
    const row = this.ctx.catalog().job(jobId);
    return row ? this.#view(row) : null;
  }

  /** Aborts every running job (backup abandons its open pack; nothing half-written becomes visible). */
  abortAll(reason: unknown): void {
    for (const job of this.#active.values()) job.controller.abort(reason);
  }

  /** Resolves when every job started so far has settled. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#active.values()].map((j) => j.done));
  }

  #view(row: JobRow): JobView {
    const live = this.#byId.get(row.id);
    const progress = (row.progress ?? null) as (JobProgress & { bytes?: number; totalBytes?: number; source?: string; phase?: string }) | null;
    return {
      ...row,
      live: Boolean(live),
      current: live?.progress ?? (progress && typeof progress.bytes === 'number' ? { label: backupLabel({ source: progress.source ?? '', phase: progress.phase ?? '' }).trim(), done: progress.bytes, total: progress.totalBytes ?? null, unit: 'bytes' } : null),
      failedFiles: live ? [...live.failedFiles] : failedFilesOf(row.result),
    };
  }

  #refusal(running: LiveJob, why: string): StrataError {
    const what = running.group ? `protection group "${running.group}"` : running.key === 'prune' ? 'the pool (prune)' : running.key.replace(/^[a-z]+:/, '');
    return new StrataError(
      'STRATA_JOB_RUNNING',
      `another job is in progress: ${running.kind} of ${what}${running.jobId !== null ? ` (job ${running.jobId})` : ''}; ${why}; wait for it, or follow it with 'strata jobs --follow'`,
      { kind: 'failed' },
    );
  }

  /** Checks and registers a job synchronously, so two requests cannot both pass the check. */
  #claim(key: string, kind: string, group: string | null, trigger: Trigger, listener: JobListener | undefined): LiveJob {
    const prune = this.#active.get('prune');
    if (prune) throw this.#refusal(prune, 'no other job runs during a prune');
    const running = this.#active.get(key);
    if (running) throw this.#refusal(running, 'one job per protection group runs at a time');
    const job: LiveJob = {
      key,
      kind,
      group,
      trigger,
      jobId: null,
      controller: new AbortController(),
      listeners: new Set(listener ? [listener] : []),
      progress: null,
      failedFiles: [],
      done: Promise.resolve(),
      onStarted: () => {},
    };
    this.#active.set(key, job);
    return job;
  }

  async #start<R>(job: LiveJob, run: () => Promise<R>): Promise<Started<R>> {
    const started = new Promise<void>((resolve) => (job.onStarted = resolve));
    const done = (async () => {
      try {
        const result = await run();
        const row = job.jobId !== null ? this.ctx.catalog().job(job.jobId) : undefined;
        this.#emit(job, { type: 'end', jobId: job.jobId ?? 0, state: row?.state ?? 'completed', result });
        return result;
      } catch (err) {
        if (job.jobId !== null) {
          if (job.controller.signal.aborted) {
            // Stopped by the daemon: say so in the history rather than 'failed'.
            this.ctx.catalog().finishJob(job.jobId, 'interrupted', this.ctx.clock.now(), null, errorPayload(err).message);
          }
          this.ctx.log.error({ jobId: job.jobId, kind: job.kind, group: job.group, causes: errorChain(err) }, 'job failed');
          this.#emit(job, { type: 'end', jobId: job.jobId, state: this.ctx.catalog().job(job.jobId)?.state ?? 'failed', error: errorPayload(err) });
        }
        throw err;
      } finally {
        this.#active.delete(job.key);
        if (job.jobId !== null) this.#byId.delete(job.jobId);
        job.listeners.clear();
      }
    })();
    job.done = done.then(
      () => {},
      () => {},
    );
    await Promise.race([started, job.done]);
    if (job.jobId === null) {
      // Refused or failed before it was recorded: its error. (A job that never reports its id is followed only once done.)
      const result = await done;
      return { jobId: (result as { jobId?: number }).jobId ?? 0, done };
    }
    return { jobId: job.jobId, done };
  }

  #started(job: LiveJob, jobId: number): void {
    job.jobId = jobId;
    this.#byId.set(jobId, job);
    this.ctx.log.info({ jobId, kind: job.kind, group: job.group, trigger: job.trigger }, 'job started');
    this.#emit(job, { type: 'started', jobId, kind: job.kind, group: job.group, trigger: job.trigger });
    job.onStarted();
  }

  #lastEmit = new WeakMap<LiveJob, number>();
  #progress(job: LiveJob, progress: JobProgress): void {
    job.progress = progress;
    const now = this.ctx.clock.now();
    if (now - (this.#lastEmit.get(job) ?? 0) < (this.#options.progressEveryMs ?? 250)) return;
    this.#lastEmit.set(job, now);
    this.#emit(job, { type: 'progress', jobId: job.jobId ?? 0, progress });
  }

  #emit(job: LiveJob, event: JobEvent): void {
    for (const l of job.listeners) {
      try {
        l(event);
      } catch (err) {
        this.ctx.log.warn({ err }, 'a job follower failed');
      }
    }
  }
}
