// The daemon for end-to-end tests: a registered sandbox (a server must be registered before it backs
// up), the real `strata daemon` in a child process, and bounded waiting.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Azurite } from './azurite.js';
import { makeSandbox, spawnCli, type Sandbox } from './cli.js';

/** A sandbox with a pool, registered to a fresh container of `azurite` (the one place to change if registration changes). */
export async function registeredSandbox(azurite: Azurite, extraConfig: Record<string, unknown> = {}): Promise<Sandbox> {
  const sb = await makeSandbox(extraConfig);
  const creds = path.join(sb.dir, 'vault.xml');
  const steps = [
    ['init'],
    ['vault', 'credentials', 'create', '--endpoint', azurite.endpoint, '--container', `vault-${randomBytes(4).toString('hex')}`, '--out', creds],
    ['register', '--vault-credentials', creds],
  ];
  for (const args of steps) {
    const r = await sb.strata(args, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`strata ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  }
  return sb;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, options: { timeoutMs?: number; everyMs?: number } = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, options.everyMs ?? 100));
  }
}

export interface DaemonProcess {
  child: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null if killed by a signal) and how long it took after `kill`. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` and waits (bounded) for the exit; SIGKILLs after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

/**
 * Spawns `strata daemon --config …` and waits for its "running" line (or its exit, for start errors).
 * Its schedules are read on a clock that starts at noon today (fastSchedules(1) unless `env` says
 * otherwise): a test that runs across midnight or 03:30 does not see a daily schedule fire.
 */
export async function startDaemonProcess(sb: Sandbox, options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<DaemonProcess> {
  const child = spawnCli(['daemon', '--config', sb.config], { env: { ...fastSchedules(1), ...options.env } });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const killer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  const up = await Promise.race([waitFor('the daemon to start', () => /strata daemon running/.test(out), { timeoutMs: options.timeoutMs ?? 30_000 }).then(() => true), exited.then(() => false)]);
  clearTimeout(killer);
  const proc: DaemonProcess = {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      const t0 = Date.now();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const r = await exited;
      clearTimeout(timer);
      return { ...r, ms: Date.now() - t0 };
    },
  };
  if (!up) throw Object.assign(new Error(`the daemon exited at start: ${err.trim()}`), { daemon: proc, stderr: err, exit: await exited });
  return proc;
}

/**
 * The daemon's env for schedules read on a clock `scale` times faster, starting at noon today: a test's
 * few scaled hours then stay clear of the daily schedules (a group's at 00:00, the prune at 03:30) at
 * whatever time of day the test runs.
 */
export function fastSchedules(scale: number): NodeJS.ProcessEnv {
  return { STRATA_SCHEDULE_SCALE: String(scale), STRATA_SCHEDULE_START: String(noonToday()) };
}

/** Noon today, local time (ms since the epoch): where test schedule clocks start. */
export function noonToday(): number {
  const noon = new Date();
  noon.setHours(12, 0, 0, 0);
  return noon.getTime();
}
