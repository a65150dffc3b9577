// `strata setup`: prerequisite checks (Node, cores and memory, local file systems for the catalog,
// pool and scratch area, write access, free space, the scratch area against the data planned for the
// cloud), a summary of the settings, then creation of what is missing: pool, scratch area, catalog.
// The checks only read; nothing is created until the caller confirms.
import { constants, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { StrataConfig } from '../config/types.js';
import { StrataError } from '../errors.js';
import type { AgentContext } from './context.js';
import { initPool } from './jobs.js';

/** File system types that are network shares: never for the catalog, the pool or the scratch area. */
export const NETWORK_FILESYSTEMS = new Set([
  'nfs',
  'nfs4',
  'cifs',
  'smb3',
  'smbfs',
  'sshfs',
  'fuse.sshfs',
  '9p',
  'afs',
  'ceph',
  'fuse.ceph',
  'glusterfs',
  'fuse.glusterfs',
  'lustre',
  'davfs',
  'fuse.davfs',
  'fuse.rclone',
  'fuse.s3fs',
  'fuse.gcsfuse',
  'fuse.blobfuse',
  'fuse.blobfuse2',
  'ncpfs',
  'coda',
]);

export const MIN_NODE = [20, 19] as const;
export const MIN_CORES = 2;
export const MIN_MEMORY_BYTES = 4 * 1024 ** 3;
/** The scratch area holds at least this fraction of the data protected to the cloud (DESIGN.md). */
export const SCRATCH_FRACTION = 0.05;

export interface SetupCheck {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
}

/** Facts about the machine; injectable for tests. */
export interface MachineFacts {
  nodeVersion: string;
  cpus: number;
  memoryBytes: number;
  /** /proc/mounts. */
  mountsFile: string;
  /** Free bytes for an unprivileged writer on the file system holding `dir` (default: statfs). */
  freeBytes?: (dir: string) => Promise<number>;
}

export interface Mount {
  device: string;
  mountPoint: string;
  type: string;
}

export interface SetupPlan {
  ok: boolean;
  checks: SetupCheck[];
  settings: {
    config: string | null;
    stateDir: string;
    /** What existed when the checks ran (the context's logger creates the state directory afterwards). */
    existing: { stateDir: boolean; catalog: boolean; scratch: boolean };
    catalog: string;
    pool: string;
    poolExists: boolean;
    scratch: string;
    passphraseFile: string;
    passphraseFileExists: boolean;
    groups: { name: string; sources: string[]; syncFrequency: string; retentionDays: number; online: string | null }[];
    protectedBytes: number;
    cloudBytes: number;
    scratchNeededBytes: number;
  };
}

function defaultFacts(): MachineFacts {
  return { nodeVersion: process.versions.node, cpus: os.availableParallelism?.() ?? os.cpus().length, memoryBytes: os.totalmem(), mountsFile: '/proc/mounts' };
}

/** Parses /proc/mounts (octal escapes such as \040 in mount points decoded). */
export function parseMounts(text: string): Mount[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 3)
    .map(([device, mountPoint, type]) => ({ device: unescape(device!), mountPoint: unescape(mountPoint!), type: type! }));
}

/** The mount holding `file` (an existing, resolved path): the longest mount point that contains it; the last one mounted wins. */
export function mountOf(file: string, mounts: Mount[]): Mount | null {
  let best: Mount | null = null;
  for (const m of mounts) {
    const inside = m.mountPoint === '/' || file === m.mountPoint || file.startsWith(m.mountPoint.endsWith('/') ? m.mountPoint : m.mountPoint + '/');
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/** The path itself if it exists, else its nearest existing ancestor, resolved (symlinks followed). */
export async function nearestExisting(p: string): Promise<string> {
  let dir = path.resolve(p);
  for (;;) {
    try {
      return await fs.realpath(dir);
    } catch {
      const up = path.dirname(dir);
      if (up === dir) return dir;
      dir = up;
    }
  }
}

async function statfsFree(dir: string): Promise<number> {
  const s = await fs.statfs(dir);
  return s.bavail * s.bsize;
}

/** Bytes of data under a source: the sum of file sizes (a SQLite source: its file). Missing: 0. */
export async function sourceBytes(p: string): Promise<number> {
  let total = 0;
  const walk = async (abs: string): Promise<void> => {
    const st = await fs.lstat(abs).catch(() => null);
    if (!st) return;
    if (st.isFile()) total += st.size;
    else if (st.isDirectory()) for (const name of await fs.readdir(abs).catch(() => [] as string[])) await walk(path.join(abs, name));
  };
  await walk(p);
  return total;
}

function fmt(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

/** Runs every check (read-only) and describes what setup would do. */
export async function checkPrerequisites(config: StrataConfig, facts: Partial<MachineFacts> = {}): Promise<SetupPlan> {
  const f = { ...defaultFacts(), ...facts };
  const free = f.freeBytes ?? statfsFree;
  const checks: SetupCheck[] = [];
  const add = (name: string, status: SetupCheck['status'], detail: string) => checks.push({ name, status, detail });

  const [major = 0, minor = 0] = f.nodeVersion.split('.').map(Number);
  const nodeOk = major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1]);
  add('node', nodeOk ? 'ok' : 'fail', `Node.js ${f.nodeVersion}${nodeOk ? '' : `: strata needs ${MIN_NODE.join('.')} or later`}`);
  add('cpu', f.cpus >= MIN_CORES ? 'ok' : 'warn', `${f.cpus} core(s)${f.cpus >= MIN_CORES ? '' : `: at least ${MIN_CORES} recommended (backups will be slow)`}`);
  add(
    'memory',
    f.memoryBytes >= MIN_MEMORY_BYTES ? 'ok' : 'warn',
    `${fmt(f.memoryBytes)}${f.memoryBytes >= MIN_MEMORY_BYTES ? '' : `: at least ${fmt(MIN_MEMORY_BYTES)} recommended`}`,
  );

  let mounts: Mount[] = [];
  try {
    mounts = parseMounts(readFileSync(f.mountsFile, 'utf8'));
  } catch {
    add('mounts', 'warn', `cannot read ${f.mountsFile}: file system types not checked`);
  }

  const protectedBytes = new Map<string, number>();
  for (const g of config.protectionGroups) for (const s of g.sources) if (!protectedBytes.has(s.path)) protectedBytes.set(s.path, await sourceBytes(s.path));
  const total = [...protectedBytes.values()].reduce((a, b) => a + b, 0);
  const cloudSources = new Set(config.protectionGroups.filter((g) => g.online).flatMap((g) => g.sources.map((s) => s.path)));
  const cloudBytes = [...cloudSources].reduce((a, p) => a + (protectedBytes.get(p) ?? 0), 0);
  const scratchNeeded = Math.ceil(cloudBytes * SCRATCH_FRACTION);

  const places: { name: string; dir: string; what: string }[] = [
    { name: 'catalog', dir: config.stateDir, what: 'the catalog (stateDir)' },
    { name: 'pool', dir: config.pool, what: 'the storage pool' },
    { name: 'scratch', dir: config.scratch, what: 'the scratch area' },
  ];
  for (const { name, dir, what } of places) {
    const real = await nearestExisting(dir);
    const mount = mountOf(real, mounts);
    if (mount && NETWORK_FILESYSTEMS.has(mount.type)) {
      add(`${name}-local`, 'fail', `${what} ${dir} is on a network share (${mount.type} at ${mount.mountPoint}); it must be on a local disk`);
    } else {
      add(`${name}-local`, 'ok', `${what} ${dir} is on a local file system${mount ? ` (${mount.type} at ${mount.mountPoint})` : ''}`);
    }
    try {
      await fs.access(real, constants.W_OK | constants.X_OK);
      add(`${name}-writable`, 'ok', `${real === path.resolve(dir) ? dir : `${real} (where ${dir} will be created)`} is writable`);
    } catch {
      add(`${name}-writable`, 'fail', `${real} is not writable by this user; ${what} ${dir} cannot be created or written`);
    }
    const bytes = await free(real).catch(() => null);
    if (bytes === null) {
      add(`${name}-space`, 'warn', `free space under ${real} is unknown`);
    } else if (name === 'scratch') {
      const ok = bytes >= scratchNeeded;
      add(
        'scratch-space',
        ok ? 'ok' : 'fail',
        `${fmt(bytes)} free for the scratch area; it needs at least 5% of the ${fmt(cloudBytes)} planned for the cloud (${fmt(scratchNeeded)})${ok ? '' : ': free space there, or move "scratch"'}`,
      );
    } else if (name === 'pool') {
      add('pool-space', bytes >= total ? 'ok' : 'warn', `${fmt(bytes)} free for the pool; the protected data is ${fmt(total)}${bytes >= total ? '' : ' (a first backup of data that does not compress or dedup may not fit)'}`);
    } else {
      add(`${name}-space`, bytes >= 100 * 1024 ** 2 ? 'ok' : 'warn', `${fmt(bytes)} free for the catalog`);
    }
  }

  for (const [p] of protectedBytes) {
    if (!(await exists(p))) add('source', 'warn', `data source ${p} does not exist (yet): its backups will fail until it does`);
  }
  const poolExists = await exists(path.join(config.pool, 'strata.json'));
  const passphraseFileExists = await exists(config.passphraseFile);
  return {
    ok: checks.every((c) => c.status !== 'fail'),
    checks,
    settings: {
      config: config.configFile ?? null,
      stateDir: config.stateDir,
      existing: { stateDir: await exists(config.stateDir), catalog: await exists(path.join(config.stateDir, 'catalog.db')), scratch: await exists(config.scratch) },
      catalog: path.join(config.stateDir, 'catalog.db'),
      pool: config.pool,
      poolExists,
      scratch: config.scratch,
      passphraseFile: config.passphraseFile,
      passphraseFileExists,
      groups: config.protectionGroups.map((g) => ({
        name: g.name,
        sources: g.sources.map((s) => (s.type === 'sqlite' ? `${s.path} (sqlite)` : s.path)),
        syncFrequency: g.disk.syncFrequency,
        retentionDays: g.disk.retentionDays,
        online: g.online ? g.online.schedule : null,
      })),
      protectedBytes: total,
      cloudBytes,
      scratchNeededBytes: scratchNeeded,
    },
  };
}

/** Human summary of a plan: the checks, then the settings. */
export function describePlan(plan: SetupPlan): string {
  const mark = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;
  const s = plan.settings;
  return [
    'Prerequisites:',
    ...plan.checks.map((c) => `  [${mark[c.status]}] ${c.detail}`),
    '',
    'Settings:',
    `  config          ${s.config ?? '-'}`,
    `  state, catalog  ${s.stateDir} (${s.catalog})`,
    `  storage pool    ${s.pool}${s.poolExists ? ' (exists: kept as it is)' : ' (will be created)'}`,
    `  scratch area    ${s.scratch}`,
    `  passphrase      ${s.passphraseFile}${s.passphraseFileExists ? '' : ' (missing)'}`,
    `  protected data  ${fmt(s.protectedBytes)}, of which ${fmt(s.cloudBytes)} to the cloud`,
    ...(s.groups.length ? s.groups.map((g) => `  group "${g.name}": ${g.sources.join(', ')}; disk ${g.syncFrequency}, kept ${g.retentionDays} days; online ${g.online ?? 'off'}`) : ['  no protection groups']),
  ].join('\n');
}

export interface SetupResult {
  plan: SetupPlan;
  created: { pool: boolean; scratch: boolean; catalog: boolean; stateDir: boolean };
  poolId: string;
  generatedPassphrase?: string;
}

/**
 * Creates what is missing (state directory 0700, scratch area, pool, catalog), after `plan` passed.
 * Idempotent: an existing pool is opened with the passphrase (which proves it), not re-created.
 */
export async function applySetup(ctx: AgentContext, plan: SetupPlan, options: { generatePassphrase?: boolean } = {}): Promise<SetupResult> {
  if (!plan.ok) {
    const failed = plan.checks.filter((c) => c.status === 'fail');
    throw new StrataError('STRATA_SETUP_FAILED', `${failed.length} prerequisite check(s) failed, nothing was created: ${failed.map((c) => c.detail).join('; ')}`, { kind: 'usage' });
  }
  const { config } = ctx;
  const { existing } = plan.settings;
  const created = { stateDir: !existing.stateDir, scratch: !existing.scratch, catalog: !existing.catalog, pool: false };
  await fs.mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await fs.mkdir(config.scratch, { recursive: true, mode: 0o700 });
  let poolId: string;
  let generated: string | undefined;
  if (plan.settings.poolExists) {
    const { pool } = await ctx.poolAndCatalog();
    poolId = pool.description.id;
  } else {
    const r = await initPool(ctx, { generatePassphrase: options.generatePassphrase ?? false });
    poolId = r.poolId;
    generated = r.generatedPassphrase;
    created.pool = true;
  }
  ctx.catalog();
  ctx.log.info({ created, poolId }, 'setup done');
  return { plan, created, poolId, ...(generated ? { generatedPassphrase: generated } : {}) };
}
