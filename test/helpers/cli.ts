// Runs the real `strata` CLI (the built dist/src/cli.js) in a child process, against a temp setup.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(REPO, 'dist', 'src', 'cli.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? REPO,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

export function spawnCli(args: string[], options: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { cwd: REPO, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface Sandbox {
  dir: string;
  config: string;
  pool: string;
  state: string;
  scratch: string;
  passphraseFile: string;
  /** Runs strata with --config set. */
  strata(args: string[], options?: { env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<CliResult>;
  /** Like strata(), but parses stdout as JSON and fails loudly on a non-zero exit. */
  json<T = any>(args: string[], options?: { env?: NodeJS.ProcessEnv }): Promise<T>;
  cleanup(): Promise<void>;
}

export const TEST_PASSPHRASE = 'correct horse battery staple 42';

/**
 * A temp directory with a config whose pool, state, scratch and passphrase file live inside it.
 * With `vault` (an Azurite endpoint), the server is registered to a vault in a container of its own.
 */
export async function makeSandbox(extraConfig: Record<string, unknown> = {}, options: { passphrase?: string; vault?: string; container?: string } = {}): Promise<Sandbox> {
  const dir = await mkdtemp(path.join(tmpdir(), 'strata-e2e-'));
  const sb = {
    dir,
    config: path.join(dir, 'strata.json'),
    pool: path.join(dir, 'pool'),
    state: path.join(dir, 'state'),
    scratch: path.join(dir, 'scratch'),
    passphraseFile: path.join(dir, 'passphrase'),
  };
  await mkdir(sb.scratch, { recursive: true });
  await writeFile(sb.passphraseFile, (options.passphrase ?? TEST_PASSPHRASE) + '\n', { mode: 0o600 });
  await writeFile(
    sb.config,
    JSON.stringify(
      {
        stateDir: sb.state,
        pool: sb.pool,
        scratch: sb.scratch,
        passphraseFile: sb.passphraseFile,
        protectionGroups: [],
        subscription: { provider: 'static', state: 'active' },
        ...extraConfig,
      },
      null,
      2,
    ),
  );
  const strata = (args: string[], o: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) => runCli([...args, '--config', sb.config], o);
  if (options.vault) {
    const container = options.container ?? `vault-${path.basename(dir).replace(/[^a-z0-9]/gi, '').toLowerCase().slice(-12)}`;
    const creds = path.join(dir, 'vault.xml');
    for (const args of [
      ['vault', 'credentials', 'create', '--endpoint', options.vault, '--container', container, '--out', creds],
      ['register', '--vault-credentials', creds],
    ]) {
      const r = await strata(args);
      if (r.code !== 0) throw new Error(`strata ${args.slice(0, 3).join(' ')} failed: ${r.stderr}`);
    }
  }
  return {
    ...sb,
    strata,
    async json(args, o = {}) {
      const r = await strata([...args, '--json'], o);
      if (r.code !== 0) throw new Error(`strata ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** sha256 of every file under a directory, keyed by relative path (to prove "nothing changed"). */
export async function snapshotDir(root: string): Promise<Record<string, string>> {
  const { createHash } = await import('node:crypto');
  const { readdir, readFile, lstat } = await import('node:fs/promises');
  const out: Record<string, string> = {};
  const walk = async (d: string, rel: string) => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    for (const n of names.sort()) {
      const p = path.join(d, n);
      const r = rel ? `${rel}/${n}` : n;
      const st = await lstat(p);
      if (st.isDirectory()) await walk(p, r);
      else out[r] = createHash('sha256').update(await readFile(p)).digest('hex');
    }
  };
  await walk(root, '');
  return out;
}
