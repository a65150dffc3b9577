// Running a command under measurement: wall time, exit status, peak RSS, CPU time.
//
// Peak RSS comes from two sources and the larger is reported:
//  - GNU time's %M (`/usr/bin/time -f %M`): the kernel's ru_maxrss, i.e. the high-water mark of the
//    largest single process in the tree (exact, but does not add up several processes);
//  - polling /proc every 100 ms: the sum of VmRSS over the whole process tree (adds up children, but
//    can miss a peak shorter than the interval). The tree is re-discovered once a second; in between
//    only the known processes' status files are read, so polling costs next to nothing.
// For single-process tools (restic, borg, a node process with worker threads) both agree closely.
//
// CPU: the tool's own user+system time (GNU time %U %S), and the whole machine's busy time over the
// same interval (/proc/stat). The difference is what *other* processes used meanwhile: on a shared
// 2-core machine that is the noise in the figure, and the report shows it.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Measured {
  code: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
  /** Peak resident set size in KiB, or null when it could not be measured. */
  peakRssKiB: number | null;
  /** User + system CPU seconds of the command and its children (GNU time), or null. */
  cpuSeconds: number | null;
  /** CPU seconds the whole machine was busy meanwhile (/proc/stat), or null. */
  machineBusySeconds: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command (and everything it started) after this many seconds. */
  timeoutSeconds?: number;
}

const GNU_TIME = '/usr/bin/time';
const MAX_CAPTURE = 8 << 20;
const CLOCK_TICKS = 100; // USER_HZ: /proc/stat counts in 1/100 s on Linux

export function haveGnuTime(): boolean {
  return existsSync(GNU_TIME);
}

/** Busy CPU seconds of the whole machine since boot (all but idle and iowait). */
export async function machineBusy(): Promise<number | null> {
  try {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** Bytes the speed probe hashes: ~0.1–0.2 s of one core on the build machine. */
const PROBE_BYTES = 256 * 1024 * 1024;
const PROBE_BUFFER = Buffer.alloc(1024 * 1024, 0x5a);

/**
 * How fast one core of this machine is right now, in MB/s of SHA-256 over a buffer that stays in the
 * cache: the same fixed work before every measured phase. A virtual machine's cores slow down when its
 * host is busy, and that shows in no process list (the background column cannot see it); a probe that
 * moves between phases says which figures were taken on a slower machine.
 */
export function cpuProbe(): number {
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < PROBE_BYTES; done += PROBE_BUFFER.length) createHash('sha256').update(PROBE_BUFFER).digest();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return PROBE_BYTES / 1e6 / seconds;
}

/** Background CPU use during a measurement, in cores: machine busy time not spent by the tool, per second. */
export function backgroundCores(m: Measured): number | null {
  if (m.cpuSeconds == null || m.machineBusySeconds == null || m.seconds <= 0) return null;
  return Math.max(0, (m.machineBusySeconds - m.cpuSeconds) / m.seconds);
}

export async function measure(cmd: string, args: string[], opts: RunOptions = {}): Promise<Measured> {
  const useTime = haveGnuTime();
  const tmp = useTime ? await mkdtemp(join(tmpdir(), 'strata-bench-time-')) : '';
  const timeFile = join(tmp, 'time');
  const [file, argv] = useTime ? [GNU_TIME, ['-f', '%M %U %S', '-o', timeFile, cmd, ...args]] : [cmd, args];
  const busy0 = await machineBusy();
  const t0 = process.hrtime.bigint();
  const child = spawn(file, argv, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    if (stdout.length < MAX_CAPTURE) stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < MAX_CAPTURE) stderr += d;
  });
  let polledKiB = 0;
  let polling = false;
  let tick = 0;
  let pids: number[] = [];
  const poll = setInterval(() => {
    if (polling || child.pid === undefined) return;
    polling = true;
    const root = child.pid;
    (async () => {
      if (tick++ % 10 === 0) pids = await processTree(root);
      polledKiB = Math.max(polledKiB, await rssSumKiB(pids, root));
    })()
      .catch(() => undefined)
      .finally(() => {
        polling = false;
      });
  }, 100);
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  if (opts.timeoutSeconds) {
    timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) void killTree(child.pid);
    }, opts.timeoutSeconds * 1000);
  }
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c, s) => resolve({ code: c, signal: s }));
  }).finally(() => {
    clearInterval(poll);
    if (timer) clearTimeout(timer);
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const busy1 = await machineBusy();
  let timeKiB: number | null = null;
  let cpuSeconds: number | null = null;
  if (useTime) {
    try {
      const text = await readFile(timeFile, 'utf8');
      // GNU time writes "Command exited with non-zero status N" before the format line on failure.
      const m = /^(\d+) ([\d.]+) ([\d.]+)$/.exec(text.trim().split('\n').pop() ?? '');
      if (m) {
        timeKiB = Number(m[1]);
        cpuSeconds = Number(m[2]) + Number(m[3]);
      }
    } catch {
      /* the command could not be started */
    }
    await rm(tmp, { recursive: true, force: true });
  }
  const peak = Math.max(timeKiB ?? 0, polledKiB);
  if (timedOut) stderr += `\n(killed after the ${opts.timeoutSeconds} s limit)`;
  return {
    // GNU time reports the wrapped command's status as its own.
    code: timedOut ? null : code,
    signal: timedOut ? 'SIGKILL' : signal,
    seconds,
    peakRssKiB: peak > 0 ? peak : null,
    cpuSeconds,
    machineBusySeconds: busy0 != null && busy1 != null ? busy1 - busy0 : null,
    stdout,
    stderr,
  };
}

/** `pid` and all its descendants, from /proc (parent links of every process). */
export async function processTree(pid: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...; comm may contain spaces and parentheses: parse after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(name), ppid);
    } catch {
      /* gone */
    }
  }
  const inTree = (p: number): boolean => {
    for (let q: number | undefined = p, hops = 0; q !== undefined && q > 1 && hops < 64; q = parent.get(q), hops++) {
      if (q === pid) return true;
    }
    return false;
  };
  return [...parent.keys()].filter(inTree);
}

/** Sum of VmRSS (KiB) of `pid` and all its descendants, from /proc. */
export async function treeRssKiB(pid: number): Promise<number> {
  return rssSumKiB(await processTree(pid), pid);
}

async function rssSumKiB(pids: readonly number[], root: number): Promise<number> {
  let sum = 0;
  for (const p of pids) {
    try {
      const status = await readFile(`/proc/${p}/status`, 'utf8');
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
      // The GNU time wrapper itself is ~2 MiB; it is part of the tree but not of the tool.
      const comm = /^Name:\s+(.*)$/m.exec(status)?.[1];
      if (m && !(p === root && comm === 'time')) sum += Number(m[1]);
    } catch {
      /* gone */
    }
  }
  return sum;
}

/** SIGKILL a process and all its descendants (the tool under GNU time, and whatever it started). */
async function killTree(pid: number): Promise<void> {
  const pids = await processTree(pid).catch(() => [pid]);
  for (const p of pids.reverse()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/** `sync`, then drop the page cache, dentries and inodes. Returns whether it worked (needs root). */
export async function dropCaches(): Promise<boolean> {
  await runQuiet('sync', []);
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

/** Apparent size in bytes of everything under `path` (`du -sb`). */
export async function duBytes(path: string): Promise<number> {
  const r = await runQuiet('du', ['-sb', path]);
  if (r.code !== 0) throw new Error(`du -sb ${path} failed: ${r.stderr.trim()}`);
  return Number(r.stdout.split(/\s/)[0]);
}

/** Run a command without measurement; resolves with its output (never rejects for a non-zero exit). */
export function runQuiet(cmd: string, args: string[], opts: RunOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < MAX_CAPTURE) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < MAX_CAPTURE) stderr += d;
    });
    child.on('error', (e) => resolve({ code: null, stdout, stderr: stderr + String(e) }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Whether an executable of that name is on PATH. */
export async function which(name: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}
