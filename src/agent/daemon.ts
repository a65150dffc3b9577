// The daemon's lifecycle: one daemon per state directory (a pid file), recovery from a previous crash
// (interrupted jobs marked, temporary files cleaned), the job runner, the scheduler and the control
// socket; and a stop that abandons the running job cleanly and exits within seconds.
//
// `startDaemon` is callable in-process (the embedded demo, tests); `strata daemon` calls it and stops it
// on SIGTERM/SIGINT.
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../clock.js';
import type { StrataConfig } from '../config/types.js';
import { StrataError } from '../errors.js';
import { pidAlive } from '../replica/lock.js';
import { DirStore } from '../store/dir-store.js';
import { AgentContext } from './context.js';
import { startEmbeddedVault, type EmbeddedVault } from './embedded-vault.js';
import { startConsole, type ConsoleServer } from './console/server.js';
import { EventPipe, startControlServer, type ControlServer, type Route } from './control-server.js';
import { JobRunner } from './job-runner.js';
import { socketPathOf } from './control-client.js';
import { errorChain } from './log.js';
import { collectMetrics, METRICS_CONTENT_TYPE, renderMetrics } from './metrics.js';
import type { DeletedObjects } from './prune.js';
import { SchedulerRunner } from './scheduler-runner.js';

/** Temporary files younger than this may belong to a writer still running (a CLI job): left alone. */
const TEMP_MAX_AGE_MS = 5 * 60 * 1000;
/** How long `stop` waits for the running jobs to settle after aborting them. */
const STOP_WAIT_MS = 20 * 1000;

export { socketPathOf };

export function pidFileOf(stateDir: string): string {
  return path.join(stateDir, 'daemon.pid');
}

export interface DaemonOptions {
  clock?: Clock;
  /** Aborting it stops the daemon (like `stop()`). */
  signal?: AbortSignal;
  /** The clock schedules are read on (default: `clock`); tests pass a FakeClock or a scaled clock. */
  scheduleClock?: Clock;
  /** Cron of the daily prune, or null for none (default: scheduler-runner's DEFAULT_PRUNE_SCHEDULE). */
  pruneSchedule?: string | null;
  /** Propagates a prune's deletions to the vault (soft delete); called after the local deletions. */
  onPruned?: (deleted: DeletedObjects, ctx: AgentContext) => Promise<void> | void;
  /** More routes for the control API (the cloud side, metrics). */
  routes?: (ctx: AgentContext) => Route[];
  /** Default 20 s. */
  stopWaitMs?: number;
}

export interface DaemonHandle {
  readonly ctx: AgentContext;
  readonly runner: JobRunner;
  readonly scheduler: SchedulerRunner;
  readonly socketPath: string;
  /** The web console (config `console`), or null when it is off. `loginUrl` carries the token. */
  readonly console: { url: string; loginUrl: string; tokenFile: string } | null;
  /** Aborts the running jobs, waits for them to settle, closes the socket, releases the state directory. Idempotent. */
  stop(reason?: string): Promise<void>;
  /** Resolves once stopped. */
  readonly stopped: Promise<void>;
}

/** State directories whose daemon runs in this process (a pid file alone cannot tell two in one process apart). */
const heldHere = new Set<string>();

function looksLikeStrata(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /node|strata/.test(cmdline);
  } catch {
    return true; // no /proc: trust the pid
  }
}

/** Takes `<stateDir>/daemon.pid` (created exclusively); a file left by a dead daemon is replaced. */
async function lockStateDir(stateDir: string): Promise<() => Promise<void>> {
  const file = pidFileOf(stateDir);
  const refuse = (pid: number) =>
    new StrataError('STRATA_DAEMON_RUNNING', `a strata daemon is already running on ${stateDir} (pid ${pid}); stop it first (systemctl stop strata, or kill ${pid})`, {
      kind: 'usage',
    });
  if (heldHere.has(stateDir)) throw refuse(process.pid);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const h = await fs.open(file, 'wx', 0o600);
      try {
        await h.writeFile(`${process.pid}\n`);
      } finally {
        await h.close();
      }
      heldHere.add(stateDir);
      return async () => {
        heldHere.delete(stateDir);
        const text = await fs.readFile(file, 'utf8').catch(() => '');
        if (Number(text.trim()) === process.pid) await fs.rm(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid) && looksLikeStrata(pid)) throw refuse(pid);
    await fs.rm(file, { force: true }); // left by a daemon that died
  }
  throw new StrataError('STRATA_DAEMON_RUNNING', `cannot take ${file}: another daemon is starting on ${stateDir}`, { kind: 'usage' });
}

/** Removes temporary files a crash left in the pool and the scratch area (only old ones: a CLI job may be writing). */
async function cleanTemporaries(ctx: AgentContext): Promise<{ pool: number; scratch: number }> {
  const now = Date.now(); // file mtimes are wall-clock times
  const pool = await ctx.poolStore.cleanTemporaries(TEMP_MAX_AGE_MS, now);
  let scratch = await new DirStore(ctx.config.scratch).cleanTemporaries(TEMP_MAX_AGE_MS, now);
  // SQLite copies made for a backup (agent/sqlite-source.ts).
  for (const name of await fs.readdir(ctx.config.scratch).catch(() => [] as string[])) {
    if (!name.startsWith('sqlite-')) continue;
    const full = path.join(ctx.config.scratch, name);
    const st = await fs.stat(full).catch(() => null);
    if (st?.isDirectory() && now - st.mtimeMs >= TEMP_MAX_AGE_MS) {
      await fs.rm(full, { recursive: true, force: true });
      scratch++;
    }
  }
  return { pool, scratch };
}

/** Creates the state directory 0700, or tightens it to 0700: the socket's protection depends on it. */
async function prepareStateDir(stateDir: string): Promise<string | null> {
  await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const st = await fs.stat(stateDir);
  if ((st.mode & 0o077) !== 0) {
    await fs.chmod(stateDir, 0o700);
    return `state directory ${stateDir} was mode ${(st.mode & 0o777).toString(8)}; set to 0700 (the control socket relies on it)`;
  }
  return null;
}

export async function startDaemon(config: StrataConfig, options: DaemonOptions = {}): Promise<DaemonHandle> {
  const tightened = await prepareStateDir(config.stateDir);
  const unlock = await lockStateDir(config.stateDir);
  const ctx = new AgentContext(config, { ...(options.clock ? { clock: options.clock } : {}), logName: 'daemon' });
  let server: ControlServer | null = null;
  let consoleServer: ConsoleServer | null = null;
  let scheduler: SchedulerRunner | null = null;
  let vault: EmbeddedVault | null = null;
  try {
    if (tightened) ctx.log.warn(tightened);
    // The embedded demo vault (config `embeddedAzurite`): Azurite on loopback, registered on first use.
    vault = await startEmbeddedVault(ctx);
    const { catalog } = await ctx.poolAndCatalog();
    const interrupted = catalog.markInterruptedJobs(ctx.clock.now(), pidAlive);
    const cleaned = await cleanTemporaries(ctx);
    const runner = new JobRunner(ctx, options.onPruned ? { onPruned: options.onPruned } : {});
    scheduler = new SchedulerRunner(ctx, {
      runner,
      ...(options.scheduleClock ? { clock: options.scheduleClock } : {}),
      ...(options.pruneSchedule !== undefined ? { pruneSchedule: options.pruneSchedule } : {}),
    });
    scheduler.entries(); // validates every schedule before anything starts
    const started = ctx.clock.now();
    const socketPath = socketPathOf(config.stateDir);
    const sched = scheduler;
    const routes = [...controlRoutes({ ctx, runner, scheduler: sched, started, socketPath }), ...(options.routes?.(ctx) ?? [])];
    server = await startControlServer(socketPath, routes, ctx.log);
    if (config.console) consoleServer = await startConsole({ ctx, runner, scheduler: sched, listen: config.console.listen });
    scheduler.start();
    ctx.log.info(
      { pid: process.pid, socket: socketPath, console: consoleServer?.url ?? null, interrupted, cleaned, groups: config.protectionGroups.map((g) => g.name) },
      'daemon started',
    );

    let stopping: Promise<void> | null = null;
    let resolveStopped!: () => void;
    const stopped = new Promise<void>((r) => (resolveStopped = r));
    const srv = server;
    const web = consoleServer;
    const stop = (reason = 'stop requested') =>
      (stopping ??= (async () => {
        ctx.log.info({ reason }, 'daemon stopping');
        try {
          await sched.stop();
          await web?.close(); // no new action from the console while the jobs wind down
          runner.abortAll(new StrataError('STRATA_ABORTED', `the daemon is stopping (${reason}): the job was abandoned; nothing half-written was kept, and the next run starts over`, { kind: 'failed' }));
          const wait = new AbortController();
          await Promise.race([runner.settled(), ctx.clock.sleep(options.stopWaitMs ?? STOP_WAIT_MS, wait.signal).catch(() => {})]);
          wait.abort();
          await srv.close();
          await vault?.stop();
          ctx.log.info('daemon stopped');
        } catch (err) {
          ctx.log.error({ causes: errorChain(err) }, 'error while stopping');
        } finally {
          ctx.close();
          await unlock();
          resolveStopped();
        }
      })());
    options.signal?.addEventListener('abort', () => void stop('signal'), { once: true });
    if (options.signal?.aborted) void stop('signal');
    const consoleInfo = web ? { url: web.url, loginUrl: web.loginUrl, tokenFile: web.tokenFile } : null;
    return { ctx, runner, scheduler, socketPath, console: consoleInfo, stop, stopped };
  } catch (err) {
    ctx.log.error({ causes: errorChain(err) }, 'daemon failed to start');
    await scheduler?.stop();
    await consoleServer?.close();
    await server?.close();
    await vault?.stop();
    ctx.close();
    await unlock();
    throw err;
  }
}

// --- the control API ---

interface RouteDeps {
  ctx: AgentContext;
  runner: JobRunner;
  scheduler: SchedulerRunner;
  started: number;
  socketPath: string;
}

function bad(message: string): StrataError {
  return new StrataError('STRATA_API_BAD_REQUEST', message, { kind: 'usage' });
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(`"${key}" must be a string`);
  return v;
}

function jobId(params: Record<string, string>): number {
  const id = Number(params['id']);
  if (!Number.isSafeInteger(id) || id <= 0) throw bad(`job id "${params['id']}" is not a number`);
  return id;
}

/** The routes of the control API (README: "The control API"). Add new ones here, or through DaemonOptions.routes. */
export function controlRoutes({ ctx, runner, scheduler, started, socketPath }: RouteDeps): Route[] {
  /** Starts a job; answers `{ jobId }`, or with `follow: true` streams its events until it ends. */
  const startJob = async (body: Record<string, unknown>, start: (listener: EventPipe['listener']) => Promise<{ jobId: number }>) => {
    const pipe = new EventPipe();
    const { jobId } = await start(pipe.listener);
    if (body['follow'] !== true) return { status: 202, json: { jobId } };
    return { stream: (emit: (e: unknown) => void, signal: AbortSignal) => pipe.pipe(emit, signal) };
  };
  const asObject = (body: unknown): Record<string, unknown> => {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('the request body must be a JSON object');
    return body as Record<string, unknown>;
  };
  return [
    {
      method: 'GET',
      path: '/status',
      handler: () => ({
        json: {
          daemon: { pid: process.pid, started, uptimeMs: ctx.clock.now() - started, stateDir: ctx.config.stateDir, socket: socketPath, config: ctx.config.configFile ?? null },
          pool: ctx.config.pool,
          running: runner.running(),
          schedules: scheduler.upcoming(),
        },
      }),
    },
    {
      method: 'GET',
      path: '/jobs',
      handler: ({ query }) => {
        const limit = Number(query.get('limit') ?? 50);
        if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) throw bad('limit must be an integer from 1 to 10000');
        return { json: runner.list(limit) };
      },
    },
    {
      method: 'GET',
      path: '/jobs/:id',
      handler: ({ params }) => {
        const job = runner.get(jobId(params));
        if (!job) throw new StrataError('STRATA_JOB_NOT_FOUND', `no job ${params['id']}; list them with 'strata jobs'`, { kind: 'usage' });
        return { json: job };
      },
    },
    {
      method: 'GET',
      path: '/jobs/:id/events',
      handler: ({ params }) => {
        const id = jobId(params);
        const pipe = new EventPipe();
        const unfollow = runner.follow(id, pipe.listener);
        if (!unfollow) {
          const job = runner.get(id);
          if (!job) throw new StrataError('STRATA_JOB_NOT_FOUND', `no job ${id}; list them with 'strata jobs'`, { kind: 'usage' });
          pipe.listener({ type: 'end', jobId: id, state: job.state, result: job.result, ...(job.error ? { error: { code: 'STRATA_JOB_FAILED', message: job.error, kind: 'failed' } } : {}) });
        }
        return {
          stream: async (emit, signal) => {
            try {
              await pipe.pipe(emit, signal);
            } finally {
              unfollow?.();
            }
          },
        };
      },
    },
    {
      method: 'POST',
      path: '/backup',
      handler: ({ body }) => {
        const b = asObject(body);
        const group = optionalString(b, 'group');
        const dir = optionalString(b, 'path');
        if (dir !== undefined && !path.isAbsolute(dir)) throw bad('"path" must be absolute');
        const exclude = b['exclude'];
        if (exclude !== undefined && (!Array.isArray(exclude) || !exclude.every((x) => typeof x === 'string'))) throw bad('"exclude" must be a list of strings');
        const to = optionalString(b, 'to');
        if (to !== undefined && !['disk', 'cloud', 'both'].includes(to)) throw bad('"to" must be one of disk, cloud, both');
        return startJob(b, (listener) =>
          runner.backup(
            {
              ...(group !== undefined ? { group } : {}),
              ...(dir !== undefined ? { path: dir } : {}),
              ...(exclude ? { exclude: exclude as string[] } : {}),
              ...(to !== undefined ? { to: to as 'disk' } : {}),
            },
            { trigger: 'ad hoc', listener },
          ),
        );
      },
    },
    {
      method: 'POST',
      path: '/restore',
      handler: ({ body }) => {
        const b = asObject(body);
        const recoveryPoint = optionalString(b, 'recoveryPoint');
        const target = optionalString(b, 'target');
        if (!recoveryPoint) throw bad('"recoveryPoint" is required');
        if (!target || !path.isAbsolute(target)) throw bad('"target" is required and must be absolute');
        const item = optionalString(b, 'item');
        const group = optionalString(b, 'group');
        const onConflict = optionalString(b, 'onConflict') ?? 'error';
        if (!['error', 'copy', 'skip', 'overwrite'].includes(onConflict)) throw bad('"onConflict" must be one of error, copy, skip, overwrite');
        return startJob(b, (listener) =>
          runner.restore(
            {
              recoveryPoint,
              target,
              onConflict: onConflict as 'error',
              ...(item !== undefined ? { item } : {}),
              ...(group !== undefined ? { group } : {}),
            },
            { listener },
          ),
        );
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      handler: async () => ({ text: renderMetrics(await collectMetrics(ctx, { jobsRunning: runner.running().length })), contentType: METRICS_CONTENT_TYPE }),
    },
    {
      method: 'POST',
      path: '/prune',
      handler: ({ body }) => {
        const b = asObject(body);
        return startJob(b, (listener) => runner.prune({ dryRun: b['dryRun'] === true }, { trigger: 'ad hoc', listener }));
      },
    },
  ];
}
