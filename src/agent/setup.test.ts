import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StrataConfig } from '../config/types.js';
import { AgentContext } from './context.js';
import { applySetup, checkPrerequisites, mountOf, parseMounts } from './setup.js';

let dir: string;
let config: StrataConfig;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'strata-setup-'));
  mkdirSync(path.join(dir, 'data'));
  writeFileSync(path.join(dir, 'data', 'a.bin'), Buffer.alloc(1_000_000));
  config = {
    stateDir: path.join(dir, 'state'),
    pool: path.join(dir, 'pool'),
    scratch: path.join(dir, 'scratch'),
    passphraseFile: path.join(dir, 'pass'),
    protectionGroups: [
      {
        name: 'g',
        sources: [{ path: path.join(dir, 'data') }],
        disk: { syncFrequency: '*/15 * * * *', retentionDays: 7 },
        online: { schedule: '0 21 * * *', retention: { daily: 7 } },
      },
    ],
    subscription: { provider: 'static', state: 'active' },
  };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mounts = (extra = '') => {
  const file = path.join(dir, 'mounts');
  writeFileSync(file, `/dev/vda / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n${extra}`);
  return file;
};
const facts = { nodeVersion: '20.20.2', cpus: 8, memoryBytes: 16 * 1024 ** 3, freeBytes: async () => 100 * 1024 ** 3 };

describe('setup', () => {
  it('parses /proc/mounts and finds the mount holding a path', () => {
    const m = parseMounts('/dev/vda / ext4 rw 0 0\nsrv:/export /mnt/my\\040share nfs4 rw 0 0\n/dev/vdb /mnt/my ext4 rw 0 0\n');
    expect(m[1]!.mountPoint).toBe('/mnt/my share');
    expect(mountOf('/mnt/my share/pool', m)?.type).toBe('nfs4');
    expect(mountOf('/mnt/my/pool', m)?.type).toBe('ext4');
    expect(mountOf('/mnt/myother', m)?.mountPoint).toBe('/');
  });

  it('passes on a good machine and describes the plan (5% of the cloud data for the scratch area)', async () => {
    const plan = await checkPrerequisites(config, { ...facts, mountsFile: mounts() });
    expect(plan.ok).toBe(true);
    expect(plan.checks.every((c) => c.status === 'ok')).toBe(true);
    expect(plan.settings).toMatchObject({ poolExists: false, protectedBytes: 1_000_000, cloudBytes: 1_000_000, scratchNeededBytes: 50_000 });
  });

  it('refuses the catalog, pool or scratch area on a network share, and a scratch area under 5% of the cloud data', async () => {
    const plan = await checkPrerequisites(config, { ...facts, mountsFile: mounts(`srv:/x ${dir} nfs4 rw 0 0\n`), freeBytes: async () => 10_000 });
    expect(plan.ok).toBe(false);
    const failed = plan.checks.filter((c) => c.status === 'fail').map((c) => c.name);
    expect(failed).toEqual(['catalog-local', 'pool-local', 'scratch-local', 'scratch-space']);
    expect(plan.checks.find((c) => c.name === 'pool-local')!.detail).toMatch(/is on a network share \(nfs4 at .*\); it must be on a local disk/);
    const ctx = new AgentContext(config);
    await expect(applySetup(ctx, plan)).rejects.toMatchObject({ code: 'STRATA_SETUP_FAILED' });
    ctx.close();
    expect(existsSync(config.pool)).toBe(false);
  });

  it('warns below 2 cores and 4 GiB, and fails an old Node', async () => {
    const plan = await checkPrerequisites(config, { ...facts, mountsFile: mounts(), cpus: 1, memoryBytes: 2 * 1024 ** 3, nodeVersion: '20.10.0' });
    expect(Object.fromEntries(plan.checks.filter((c) => ['node', 'cpu', 'memory'].includes(c.name)).map((c) => [c.name, c.status]))).toEqual({ node: 'fail', cpu: 'warn', memory: 'warn' });
  });

  it('creates the state directory (0700), scratch area, pool and catalog; again, opens what exists', async () => {
    const plan = await checkPrerequisites(config, { ...facts, mountsFile: mounts() });
    const ctx = new AgentContext(config);
    const r = await applySetup(ctx, plan, { generatePassphrase: true });
    ctx.close();
    expect(r.created).toEqual({ stateDir: true, scratch: true, catalog: true, pool: true });
    expect(r.generatedPassphrase).toMatch(/.{16,}/);
    expect(statSync(config.stateDir).mode & 0o777).toBe(0o700);
    expect(existsSync(path.join(config.pool, 'strata.json'))).toBe(true);
    const again = await checkPrerequisites(config, { ...facts, mountsFile: mounts() });
    expect(again.settings.poolExists).toBe(true);
    const ctx2 = new AgentContext(config);
    const r2 = await applySetup(ctx2, again);
    ctx2.close();
    expect(r2.created.pool).toBe(false);
    expect(r2.poolId).toBe(r.poolId);
  });
});
