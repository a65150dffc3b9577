// The tools under test. Each driver makes a fresh repository per run, and runs backup, restore
// (latest) and a full data check under measurement. Settings are chosen to be comparable:
//  - restic: repository format v2, `--compression auto` (its LZ4-class zstd "fastest" is its
//    default "auto"), AES-256 + Poly1305 always on;
//  - borg: `--encryption repokey-blake2`, `--compression lz4`;
//  - strata: LZ4 where it pays, AES-256-GCM (its only mode).
// Every tool gets its own cache/config directories inside the run directory, so no state leaks
// from one run to the next.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAzuriteProcess, type AzuriteProcess } from '../src/cloud/azurite-process.js';
import { measure, runQuiet, which, type Measured } from './measure.js';

export type ToolName = 'strata' | 'restic' | 'borg';
export const TOOL_NAMES: readonly ToolName[] = ['strata', 'restic', 'borg'];

export interface ToolInfo {
  name: ToolName;
  available: boolean;
  version: string | null;
  /** Why the tool is not available. */
  reason?: string;
}

export interface Session {
  /** The directory whose `du -sb` is the stored size. */
  readonly repoDir: string;
  /** Create a fresh, empty repository (not measured). */
  init(): Promise<void>;
  backup(src: string): Promise<Measured>;
  /** Restore the latest backup into `target` (an empty directory). */
  restore(target: string): Promise<Measured>;
  /** Read and verify all stored data. */
  check(): Promise<Measured>;
}

export interface Driver {
  readonly name: ToolName;
  probe(): Promise<ToolInfo>;
  /** A session whose repository, caches and config live in `runDir` (created, empty). */
  session(runDir: string): Session;
}

export class PhaseError extends Error {
  constructor(
    readonly tool: ToolName,
    readonly phase: string,
    message: string,
  ) {
    super(`${tool} ${phase}: ${message}`);
  }
}

/** The passphrase every tool uses (≥ 16 printable ASCII characters, as strata requires). */
export const BENCH_PASSPHRASE = 'strata-bench-passphrase-0123456789';

export interface DriverOptions {
  /** Per-phase limit; a phase taking longer is killed and reported as failed. */
  timeoutSeconds: number;
}

/** The environment without any RESTIC_*, BORG_* or STRATA_* variables of the caller. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(RESTIC|BORG|STRATA)_/.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

function tail(s: string, lines = 12): string {
  return s.trim().split('\n').slice(-lines).join('\n');
}

function ensureOk(tool: ToolName, phase: string, m: Measured): Measured {
  if (m.code !== 0) {
    const why = m.signal ? `killed by ${m.signal}` : `exit code ${m.code}`;
    throw new PhaseError(tool, phase, `${why}\n${tail(m.stderr || m.stdout)}`);
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// restic

export class ResticDriver implements Driver {
  readonly name = 'restic' as const;
  constructor(private readonly opts: DriverOptions) {}

  async probe(): Promise<ToolInfo> {
    const bin = await which('restic');
    if (!bin) return { name: this.name, available: false, version: null, reason: 'restic is not installed' };
    const r = await runQuiet('restic', ['version']);
    const version = /restic\s+(\S+)/.exec(r.stdout)?.[1] ?? null;
    return { name: this.name, available: r.code === 0, version, ...(r.code === 0 ? {} : { reason: tail(r.stderr) }) };
  }

  session(runDir: string): Session {
    const repoDir = join(runDir, 'repo');
    const env = cleanEnv({
      RESTIC_REPOSITORY: repoDir,
      RESTIC_PASSWORD: BENCH_PASSPHRASE,
      RESTIC_CACHE_DIR: join(runDir, 'cache'),
    });
    const t = this.opts.timeoutSeconds;
    const run = (phase: string, args: string[], cwd?: string): Promise<Measured> =>
      measure('restic', args, { env, timeoutSeconds: t, ...(cwd ? { cwd } : {}) }).then((m) => ensureOk('restic', phase, m));
    return {
      repoDir,
      init: async () => {
        await run('init', ['init', '--repository-version', '2']);
      },
      backup: (src) => run('backup', ['backup', '--compression', 'auto', '--host', 'strata-bench', '--quiet', src]),
      restore: (target) => run('restore', ['restore', 'latest', '--target', target, '--quiet']),
      check: () => run('check', ['check', '--read-data', '--quiet']),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// borg

export class BorgDriver implements Driver {
  readonly name = 'borg' as const;
  constructor(private readonly opts: DriverOptions) {}

  async probe(): Promise<ToolInfo> {
    const bin = await which('borg');
    if (!bin) return { name: this.name, available: false, version: null, reason: 'borg is not installed' };
    const r = await runQuiet('borg', ['--version']);
    const version = /borg\s+(\S+)/.exec(r.stdout)?.[1] ?? null;
    return { name: this.name, available: r.code === 0, version, ...(r.code === 0 ? {} : { reason: tail(r.stderr) }) };
  }

  session(runDir: string): Session {
    const repoDir = join(runDir, 'repo');
    const env = cleanEnv({
      BORG_REPO: repoDir,
      BORG_PASSPHRASE: BENCH_PASSPHRASE,
      BORG_BASE_DIR: join(runDir, 'home'),
      BORG_CACHE_DIR: join(runDir, 'cache'),
      BORG_CONFIG_DIR: join(runDir, 'config'),
      BORG_SECURITY_DIR: join(runDir, 'security'),
      BORG_KEYS_DIR: join(runDir, 'keys'),
      BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
      BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
      BORG_DISPLAY_PASSPHRASE: 'no',
    });
    const t = this.opts.timeoutSeconds;
    const run = (phase: string, args: string[], cwd?: string): Promise<Measured> =>
      measure('borg', args, { env, timeoutSeconds: t, ...(cwd ? { cwd } : {}) }).then((m) => ensureOk('borg', phase, m));
    let archives = 0;
    return {
      repoDir,
      init: async () => {
        await run('init', ['init', '--encryption', 'repokey-blake2']);
      },
      backup: (src) => run('backup', ['create', '--compression', 'lz4', `::bench-${++archives}`, src]),
      // borg extracts into the current directory.
      restore: (target) => run('restore', ['extract', `::bench-${archives}`], target),
      check: () => run('check', ['check', '--verify-data']),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// strata

export interface StrataConfigFile {
  stateDir: string;
  pool: string;
  scratch: string;
  passphraseFile: string;
  protectionGroups: never[];
  subscription: { provider: 'static'; state: 'active' };
}

/** One Azurite for the whole bench run: strata must be registered to a vault before it backs up. */
let benchVault: Promise<AzuriteProcess> | null = null;

/**
 * Whatever a fresh strata server needs before its first backup, beyond `strata init`: strata refuses
 * to back up until the server is registered to a vault (DESIGN.md, "Registration"), even to disk only.
 * The bench registers each run's server to its own container in one Azurite on loopback. Uploads are not
 * part of the measured phases (backups are `--path`, which goes to disk only).
 */
export async function prepareStrata(cfg: { configFile: string; config: StrataConfigFile; runDir: string; env: NodeJS.ProcessEnv }): Promise<void> {
  benchVault ??= startAzuriteProcess();
  const vault = await benchVault;
  const creds = join(cfg.runDir, 'vault.xml');
  const container = `bench-${basename(cfg.runDir).toLowerCase().replace(/[^a-z0-9]/g, '').slice(-20) || 'run'}-${Date.now().toString(36)}`;
  const cli = join(findRepoRootFrom(), 'dist', 'src', 'cli.js');
  for (const args of [
    ['vault', 'credentials', 'create', '--endpoint', vault.endpoint, '--container', container, '--out', creds],
    ['register', '--vault-credentials', creds],
  ]) {
    const r = await runQuiet(process.execPath, [cli, ...args, '--config', cfg.configFile], { env: cfg.env });
    if (r.code !== 0) throw new Error(`strata ${args.slice(0, 3).join(' ')} failed: ${tail(r.stderr, 4)}`);
  }
}

/** Stops the bench's Azurite (the runner calls it once at the end). */
export async function stopBenchVault(): Promise<void> {
  const v = benchVault;
  benchVault = null;
  if (v) await (await v).stop();
}

function findRepoRootFrom(): string {
  // dist/bench/drivers.js → repo root
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/**
 * How a user's `strata` starts: the bin's `#!` line (`#!/usr/bin/env -S VAR=value node --flag`), as
 * the environment variables and node options it sets, so the bench measures the command users run
 * (with this node, `process.execPath`, for the interpreter the line names).
 */
export function launcher(cli: string): { env: Record<string, string>; nodeArgs: string[] } {
  let first = '';
  try {
    first = readFileSync(cli, 'utf8').split('\n', 1)[0] ?? '';
  } catch {
    return { env: {}, nodeArgs: [] };
  }
  return parseShebang(first);
}

export function parseShebang(line: string): { env: Record<string, string>; nodeArgs: string[] } {
  const env: Record<string, string> = {};
  if (!line.startsWith('#!')) return { env, nodeArgs: [] };
  const words = line.slice(2).trim().split(/\s+/);
  let i = 0;
  if (basename(words[0] ?? '') === 'env') {
    i++;
    if (words[i] === '-S') i++;
    for (; i < words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i]!); i++) {
      const w = words[i]!;
      env[w.slice(0, w.indexOf('='))] = w.slice(w.indexOf('=') + 1);
    }
  }
  i++; // the interpreter (node)
  return { env, nodeArgs: words.slice(i) };
}

export class StrataDriver implements Driver {
  readonly name = 'strata' as const;
  readonly cli: string;

  constructor(
    private readonly opts: DriverOptions & { repoRoot: string; version: string | null },
  ) {
    this.cli = join(opts.repoRoot, 'dist', 'src', 'cli.js');
  }

  async probe(): Promise<ToolInfo> {
    const version = this.opts.version;
    if (!existsSync(this.cli)) return { name: this.name, available: false, version, reason: `${this.cli} does not exist (not built yet?)` };
    const r = await runQuiet(process.execPath, [this.cli, '--help']);
    if (r.code !== 0) return { name: this.name, available: false, version, reason: `strata --help failed (exit ${r.code}): ${tail(r.stderr, 4)}` };
    return { name: this.name, available: true, version };
  }

  session(runDir: string): Session {
    const config: StrataConfigFile = {
      stateDir: join(runDir, 'state'),
      pool: join(runDir, 'pool'),
      scratch: join(runDir, 'scratch'),
      passphraseFile: join(runDir, 'passphrase'),
      protectionGroups: [],
      subscription: { provider: 'static', state: 'active' },
    };
    const configFile = join(runDir, 'strata.json');
    const env = cleanEnv({});
    const t = this.opts.timeoutSeconds;
    const launch = launcher(this.cli);
    const run = (phase: string, args: string[]): Promise<Measured> =>
      measure(process.execPath, [...launch.nodeArgs, this.cli, ...args, '--config', configFile], { env: { ...env, ...launch.env }, timeoutSeconds: t }).then((m) =>
        ensureOk('strata', phase, m),
      );
    return {
      repoDir: config.pool,
      init: async () => {
        await mkdir(config.stateDir, { recursive: true });
        await mkdir(config.scratch, { recursive: true });
        await writeFile(config.passphraseFile, `${BENCH_PASSPHRASE}\n`, { mode: 0o600 });
        await writeFile(configFile, JSON.stringify(config, null, 2));
        await run('init', ['init']);
        await prepareStrata({ configFile, config, runDir, env });
      },
      backup: async (src) => {
        const m = await run('backup', ['backup', '--path', src, '--json']);
        const out = parseJsonOutput(m.stdout) as { recoveryPoint?: { id?: unknown } } | null;
        if (!out?.recoveryPoint?.id) throw new PhaseError('strata', 'backup', `no recoveryPoint.id in --json output: ${tail(m.stdout, 4)}`);
        return m;
      },
      restore: (target) => run('restore', ['restore', 'latest', '--target', target, '--json']),
      check: () => run('check', ['check', '--read-data', '--json']),
    };
  }
}

/** The JSON object a `--json` command printed: the whole of stdout, or else its last line that parses. */
export function parseJsonOutput(stdout: string): unknown {
  const s = stdout.trim();
  try {
    return JSON.parse(s);
  } catch {
    for (const line of s.split('\n').reverse()) {
      try {
        return JSON.parse(line);
      } catch {
        /* keep looking */
      }
    }
    return null;
  }
}

/**
 * Where a restore put the backed-up directory `src` under `target`: restic and borg recreate its
 * absolute path below the target; a tool may also restore it as `target/<basename>` or as the target
 * itself. The first candidate holding the same top-level names as `src` wins.
 */
export async function locateRestored(target: string, src: string): Promise<string> {
  const want = (await readdir(src)).sort();
  const candidates = [join(target, src), join(target, basename(src)), target];
  for (const c of candidates) {
    if (!existsSync(c)) continue;
    try {
      const names = (await readdir(c)).sort();
      if (want.every((n) => names.includes(n))) return c;
    } catch {
      /* not a directory */
    }
  }
  return candidates[0] as string;
}
