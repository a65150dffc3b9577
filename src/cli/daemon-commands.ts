// The daemon's commands: `strata daemon`, `setup`, `prune`, `jobs` and `status` (a registrar for commands.ts).
import type { Command } from 'commander';
import { createInterface } from 'node:readline/promises';
import { processClock } from '../clock.js';
import { loadConfig, resolveConfigPath } from '../config/load.js';
import type { ControlClient } from '../agent/control-client.js';
import type { JobEvent, JobView } from '../agent/job-runner.js';
import type { PruneJobResult } from '../agent/prune.js';
import type { JobRow } from '../catalog/catalog.js';
import { StrataError } from '../errors.js';
import { formatBytes, formatDuration, formatTime, table } from './format.js';
import { EXIT, common, type CommandRegistrar, type CommonOptions, type Invocation } from './invocation.js';

const jobRunner = () => import('../agent/job-runner.js');

export const registerDaemonCommands: CommandRegistrar = (program, inv, setExit) => {
  daemonCommand(program, inv);
  setupCommand(program, inv);
  pruneCommand(program, inv);
  jobsCommand(program, inv, setExit);
  statusCommand(program, inv);
};

function daemonCommand(program: Command, inv: Invocation): void {
  common(program.command('daemon'))
    .description('run the strata service in the foreground: schedules, jobs, the control socket (systemd runs it so)')
    .action(async (opts: CommonOptions) => {
      const config = loadConfig(resolveConfigPath(opts.config));
      const clock = processClock();
      // Test-only: STRATA_SCHEDULE_SCALE=N reads schedules on a clock N times faster (a 15-minute schedule
      // every 15/N minutes), and STRATA_SCHEDULE_START (ms since the epoch) is that clock's time at start.
      const scale = Number(process.env['STRATA_SCHEDULE_SCALE'] ?? 1);
      const start = Number(process.env['STRATA_SCHEDULE_START'] ?? NaN);
      const { startDaemon } = await import('../agent/daemon.js');
      const { scaledClock } = await import('../agent/scheduler-runner.js');
      // (scaledClock returns `clock` itself when neither is set.)
      const handle = await startDaemon(config, { clock, scheduleClock: scaledClock(clock, scale, Number.isFinite(start) ? start : undefined) });
      const onSignal = (sig: string) => void handle.stop(sig);
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      inv.io.out(
        `strata daemon running: pid ${process.pid}, state ${config.stateDir}, socket ${handle.socketPath}, log ${config.stateDir}/logs/daemon.log` +
          (handle.console ? `\nconsole: ${handle.console.loginUrl} (token also in ${handle.console.tokenFile}; a new one at each start)` : ''),
      );
      await handle.stopped;
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      inv.io.out('strata daemon stopped');
      // Whatever a library left behind must not keep a stopped service alive.
      setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
    });
}

function setupCommand(program: Command, inv: Invocation): void {
  common(program.command('setup'))
    .description('check prerequisites, show a summary of the settings, then create the pool, scratch area and catalog')
    .option('--yes', 'do not ask for confirmation (required when not on a terminal)')
    .option('--generate-passphrase', 'generate a strong passphrase into the passphrase file (when it does not exist)')
    .action(async (opts: CommonOptions & { yes?: boolean; generatePassphrase?: boolean }) => {
      // The checks only read: the context (whose log creates the state directory) is opened after them.
      const { checkPrerequisites, describePlan } = await import('../agent/setup.js');
      const plan = await checkPrerequisites(loadConfig(resolveConfigPath(opts.config)));
      if (!opts.json) inv.io.out(describePlan(plan));
      if (!plan.ok) {
        const failed = plan.checks.filter((c) => c.status === 'fail');
        throw new StrataError('STRATA_SETUP_FAILED', `${failed.length} prerequisite check(s) failed, nothing was created: ${failed.map((c) => c.detail).join('; ')}`, { kind: 'usage' });
      }
      if (!plan.settings.poolExists && !plan.settings.passphraseFileExists && !opts.generatePassphrase) {
        throw new StrataError(
          'STRATA_PASSPHRASE_FILE',
          `passphrase file ${plan.settings.passphraseFile} does not exist; write a passphrase of at least 16 characters there, or add --generate-passphrase`,
          { kind: 'usage' },
        );
      }
      if (!opts.yes) {
        if (!(process.stdin.isTTY && inv.io.tty)) throw new StrataError('STRATA_USAGE', 'not on a terminal: review the summary, then run again with --yes to create the pool, scratch area and catalog', { kind: 'usage' });
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl.question('\nCreate what is missing with these settings? [y/N] ');
        rl.close();
        if (!/^y(es)?$/i.test(answer.trim())) {
          inv.io.out('nothing was changed');
          return;
        }
      }
      const ctx = inv.context(opts);
      const r = await (await import('../agent/setup.js')).applySetup(ctx, plan, { generatePassphrase: opts.generatePassphrase ?? false });
      inv.print(opts, r, () =>
        [
          '',
          `${r.created.pool ? 'created' : 'opened'} storage pool ${r.poolId} at ${ctx.config.pool}; scratch ${ctx.config.scratch}; catalog ${ctx.catalogFile}`,
          ...(r.generatedPassphrase ? [`generated passphrase (also written to ${ctx.config.passphraseFile}):\n\n    ${r.generatedPassphrase}\n`] : []),
          ...(r.created.pool ? ['IMPORTANT: keep a copy of the passphrase somewhere safe, away from this server: a lost passphrase means lost data.'] : []),
          `next: start the service (systemctl enable --now strata, or 'strata daemon')`,
        ].join('\n'),
      );
    });
}

function describePrune(r: PruneJobResult): string {
  const verb = r.dryRun ? 'would be' : 'were';
  const lines = [
    `retention: ${r.retention.removed.length} recovery point(s) ${verb} removed, ${r.retention.kept.length} kept (the latest of each data source is always kept)`,
    ...r.retention.removed.slice(0, 20).map((p) => `  remove ${p.id.slice(0, 12)} ${formatTime(p.time)} ${p.group || '-'} ${p.source}`),
    `packs: ${r.packsDeleted.length} with no live data ${r.dryRun ? 'would be ' : ''}deleted, ${r.packsRepacked.length} mostly garbage ${r.dryRun ? 'would be ' : ''}repacked, ${r.unreferencedPacksDeleted.length} left by interrupted backups ${r.dryRun ? 'would be ' : ''}deleted${r.unreferencedPacksKept ? ` (${r.unreferencedPacksKept} recent ones kept)` : ''}`,
    `${r.dryRun ? 'would free' : 'freed'} ${formatBytes(Math.max(0, r.bytesFreed))} (${formatBytes(r.bytesDeleted)} deleted, ${formatBytes(r.bytesWritten)} written)`,
  ];
  if (r.damagedPacks.length) lines.push(`WARNING: ${r.damagedPacks.length} damaged pack(s) left as they are; run strata check --read-data`);
  if (r.dryRun) lines.push('dry run: nothing was changed');
  return lines.join('\n');
}

function pruneCommand(program: Command, inv: Invocation): void {
  common(program.command('prune'))
    .description('apply retention (the latest recovery point of each data source is always kept), then remove and repack what nothing references')
    .option('--dry-run', 'report what would be removed, change nothing')
    .action(async (opts: CommonOptions & { dryRun?: boolean }) => {
      const ctx = inv.context(opts);
      const progress = inv.progress(opts);
      let r: PruneJobResult;
      try {
        const { ControlClient, daemonBypassed } = await import('../agent/control-client.js');
        const client = ControlClient.forConfig(ctx.config);
        const viaDaemon = !daemonBypassed() && (await client.available());
        r = viaDaemon
          ? await client.runJob<PruneJobResult>('/prune', { dryRun: opts.dryRun ?? false }, (p) => progress.update(p))
          : await (await import('../agent/prune.js')).runPrune(ctx, { dryRun: opts.dryRun ?? false, onProgress: (p) => progress.update({ label: `prune: ${p.phase}`, done: p.done, total: p.total, unit: 'items' }) });
      } finally {
        progress.stop();
      }
      inv.print(opts, r, () => describePrune(r));
    });
}

function jobLine(j: JobView): string[] {
  const duration = j.ended !== null ? formatDuration(j.ended - j.started) : j.live ? 'running' : '-';
  const note = j.error ?? (j.current && j.state === 'running' ? `${j.current.label}: ${j.current.unit === 'bytes' ? formatBytes(j.current.done) : j.current.done}${j.current.total ? ` of ${j.current.unit === 'bytes' ? formatBytes(j.current.total) : j.current.total}` : ''}` : '');
  return [String(j.id), j.kind, j.group ?? '-', j.state, formatTime(j.started), duration, j.trigger ?? '', note];
}

function jobsCommand(program: Command, inv: Invocation, setExit: (code: number) => void): void {
  common(program.command('jobs'))
    .description('jobs with their state, progress, results and the files that failed; --follow shows live progress (needs the daemon)')
    .argument('[id]', 'one job: its details (with --follow: follow it)')
    .option('--follow', 'follow running jobs (or job ID) until they end; with --json, one JSON event per line')
    .option('--limit <n>', 'how many jobs to list', '30')
    .action(async (id: string | undefined, opts: CommonOptions & { follow?: boolean; limit: string }) => {
      const ctx = inv.context(opts);
      const client = (await import('../agent/control-client.js')).ControlClient.forConfig(ctx.config);
      const limit = Number(opts.limit);
      if (!Number.isSafeInteger(limit) || limit < 1) throw new StrataError('STRATA_USAGE', '--limit must be a positive integer', { kind: 'usage' });
      if (id !== undefined && !/^\d+$/.test(id)) throw new StrataError('STRATA_USAGE', `job id "${id}" is not a number; list jobs with 'strata jobs'`, { kind: 'usage' });
      if (opts.follow) {
        await followJobs(inv, opts, client, id === undefined ? null : Number(id), setExit);
        return;
      }
      const daemon = await client.available();
      const { failedFilesOf } = await jobRunner();
      const fromRow = (row: JobRow): JobView => ({ ...row, live: false, current: null, failedFiles: failedFilesOf(row.result) });
      const fromCatalog = (): JobView[] => ctx.catalog().jobs(limit).map(fromRow);
      if (id !== undefined) {
        const row = daemon ? null : ctx.catalog().job(Number(id));
        if (!daemon && !row) throw new StrataError('STRATA_JOB_NOT_FOUND', `no job ${id}; list them with 'strata jobs'`, { kind: 'usage' });
        const view = daemon ? await client.request<JobView>('GET', `/jobs/${id}`) : fromRow(row!);
        inv.print(opts, view, () =>
          [
            table(['ID', 'KIND', 'GROUP', 'STATE', 'STARTED', 'TOOK', 'TRIGGER', ''], [jobLine(view)]),
            ...(view.failedFiles.length ? [`files that failed (${view.failedFiles.length}):`, ...view.failedFiles.slice(0, 200).map((f) => `  ${f}`)] : []),
          ].join('\n'),
        );
        return;
      }
      const jobs = daemon ? await client.request<JobView[]>('GET', `/jobs?limit=${limit}`) : fromCatalog();
      inv.print(opts, jobs, () =>
        jobs.length === 0
          ? 'no jobs yet'
          : [
              table(['ID', 'KIND', 'GROUP', 'STATE', 'STARTED', 'TOOK', 'TRIGGER', ''], jobs.map(jobLine)),
              ...(daemon ? [] : ['(the daemon is not running: history from the catalog)']),
              ...jobs.filter((j) => j.failedFiles.length).map((j) => `job ${j.id}: ${j.failedFiles.length} file(s) failed; 'strata jobs ${j.id}' lists them`),
            ].join('\n'),
      );
    });
}

async function followJobs(inv: Invocation, opts: CommonOptions, client: ControlClient, id: number | null, setExit: (code: number) => void): Promise<void> {
  const ids = id !== null ? [id] : (await client.request<{ running: JobView[] }>('GET', '/status')).running.map((j) => j.id);
  if (ids.length === 0) {
    if (!opts.json) inv.io.out('no job is running');
    return;
  }
  for (const jobId of ids) {
    const progress = inv.progress(opts);
    let end: Extract<JobEvent, { type: 'end' }> | null = null;
    try {
      await client.stream('GET', `/jobs/${jobId}/events`, undefined, (event) => {
        if (opts.json) inv.io.out(JSON.stringify(event));
        if (event.type === 'progress') progress.update(event.progress);
        else if (event.type === 'end') end = event;
      });
    } finally {
      progress.stop();
    }
    const ended = end as Extract<JobEvent, { type: 'end' }> | null;
    if (!ended) throw new StrataError('STRATA_DAEMON_UNREACHABLE', `the daemon closed the connection before job ${jobId} ended; see 'strata jobs ${jobId}'`, { kind: 'failed' });
    if (!opts.json) {
      const failed = (await jobRunner()).failedFilesOf(ended.result);
      inv.io.out([`job ${jobId}: ${ended.state}${ended.error ? `: ${ended.error.message}` : ''}`, ...failed.slice(0, 50).map((f) => `  failed: ${f}`)].join('\n'));
    }
    if (ended.state === 'failed' || ended.state === 'interrupted') setExit(EXIT.failed);
  }
}

function statusCommand(program: Command, inv: Invocation): void {
  common(program.command('status'))
    .description("the daemon's state: pid, uptime, running jobs and the next scheduled runs")
    .action(async (opts: CommonOptions) => {
      const ctx = inv.context(opts);
      const client = (await import('../agent/control-client.js')).ControlClient.forConfig(ctx.config);
      // No daemon: one clear line, STRATA_DAEMON_NOT_RUNNING (or STRATA_DAEMON_UNREACHABLE), from the client.
      const s = await client.request<{
        daemon: { pid: number; uptimeMs: number; stateDir: string; socket: string };
        running: JobView[];
        schedules: { kind: string; group: string | null; cron: string; due: number }[];
      }>('GET', '/status');
      inv.print(opts, s, () =>
        [
          `daemon running: pid ${s.daemon.pid}, up ${formatDuration(s.daemon.uptimeMs)}, state ${s.daemon.stateDir}, socket ${s.daemon.socket}`,
          s.running.length ? table(['ID', 'KIND', 'GROUP', 'STATE', 'STARTED', 'TOOK', 'TRIGGER', ''], s.running.map(jobLine)) : 'no job running',
          'next runs:',
          ...s.schedules.map((x) => `  ${formatTime(x.due)}  ${x.kind.padEnd(6)} ${x.group ?? '(all)'}  (${x.cron})`),
        ].join('\n'),
      );
    });
}
