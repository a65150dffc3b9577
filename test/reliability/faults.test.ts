// Fault suite: a full pool disk, a full scratch area, a full catalog disk, and a vault that goes away
// for a while. No job reports success with data missing, and nothing already protected is lost.
// The small file systems are tmpfs mounts (needs root; skipped otherwise).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, type Sandbox } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { bytes, digestTree, writeTree } from '../helpers/fs-tree.js';

const mounts: string[] = [];
function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(path.join(tmpdir(), 'strata-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe]);
    execFileSync('umount', [probe]);
    return true;
  } catch {
    return false;
  } finally {
    rmdirSync(probe);
  }
}
const MOUNT_OK = canMount();

async function smallFs(dir: string, size: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  mounts.push(dir);
}

/** Unmounts a file system smallFs mounted (a no-op for one already unmounted: no "not mounted" noise in the log). */
async function unmount(dir: string): Promise<void> {
  if (!mounts.includes(dir)) return;
  execFileSync('umount', [dir]);
  mounts.splice(mounts.indexOf(dir), 1);
}

let azurite: Azurite;
beforeAll(async () => {
  azurite = await startAzurite();
});
afterAll(async () => {
  for (const m of [...mounts]) await unmount(m).catch(() => {});
  await azurite.stop();
});

function group(src: string) {
  return { protectionGroups: [{ name: 'g', sources: [{ path: src }], disk: { syncFrequency: '*/15 * * * *', retentionDays: 14 }, online: { schedule: '0 21 * * *', retention: { daily: 30 } } }] };
}

describe.skipIf(!MOUNT_OK)('faults', () => {
  it('the pool disk fills up: the backup fails clearly, the pool stays sound, earlier points restore, and after room is made the next backup succeeds', async () => {
    const sb = await makeSandbox({}, { vault: azurite.endpoint, container: 'enospc-pool' });
    const src = path.join(sb.dir, 'src');
    try {
      await smallFs(sb.pool, '40m');
      await writeTree(src, { 'a.bin': bytes(111, 8_000_000) });
      await sb.strata(['init']);
      const first = await sb.json(['backup', '--path', src]);
      const want = await digestTree(src);
      await writeTree(src, { 'b.bin': bytes(112, 40_000_000) });
      const full = await sb.strata(['backup', '--path', src]);
      expect(full.code).toBe(1);
      const lines = full.stderr.trim().split('\n').filter((l) => l.startsWith('strata: error'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/STRATA_DISK_FULL|ENOSPC|no space/i);
      expect(JSON.parse((await sb.strata(['check', '--read-data', '--json'])).stdout).ok).toBe(true);
      // No temp file left behind in the pool.
      const leftovers = execFileSync('find', [sb.pool, '-name', '.tmp-*']).toString().trim();
      expect(leftovers).toBe('');
      const t = path.join(sb.dir, 'r');
      expect((await sb.strata(['restore', first.recoveryPoint.id, '--target', t])).code).toBe(0);
      await rm(path.join(src, 'b.bin'));
      expect(await digestTree(t)).toEqual(want);
      const next = await sb.json(['backup', '--path', src]);
      expect(next.state).toBe('completed');
    } finally {
      await unmount(sb.pool).catch(() => {});
      await sb.cleanup();
    }
  });

  it('the scratch area is too small or fills up: the disk recovery point stands, the upload waits, and completes once there is room', async () => {
    const sb0 = await makeSandbox();
    const src = path.join(sb0.dir, 'src');
    await writeTree(src, { 'a.bin': bytes(121, 30_000_000) });
    const sb = await makeSandbox(group(src), { vault: azurite.endpoint, container: 'enospc-scratch' });
    try {
      await sb.strata(['init']);
      await rm(sb.scratch, { recursive: true, force: true });
      await smallFs(sb.scratch, '1m');
      const tooSmall = await sb.strata(['backup', 'g', '--json']);
      expect(tooSmall.code).toBe(0);
      const out = JSON.parse(tooSmall.stdout);
      expect(out.state).toBe('warnings');
      expect(out.cloudError).toMatch(/STRATA_SCRATCH_TOO_SMALL: .*5% of the data protected to the cloud/);
      const rp = (await sb.json(['recovery-points']))[0];
      expect(rp.diskState).toBe('present');
      expect(rp.cloudState).not.toBe('uploaded');
      // Room enough for the 5% rule but not for a 16 MiB pack: staging hits ENOSPC.
      await unmount(sb.scratch);
      await smallFs(sb.scratch, '3m');
      const full = await sb.strata(['replicate']);
      expect(full.code).not.toBe(0);
      expect(full.stderr).toMatch(/STRATA_DISK_FULL|ENOSPC|no space/i);
      expect(await readdir(path.join(sb.scratch, 'staging'))).toEqual([]); // nothing left half-staged
      await unmount(sb.scratch);
      const done = await sb.json(['replicate']);
      expect(done.recoveryPoints).toEqual([rp.id]);
      expect((await sb.json(['check', '--cloud', '--read-data'])).ok).toBe(true);
    } finally {
      await unmount(sb.scratch).catch(() => {});
      await sb.cleanup();
      await sb0.cleanup();
    }
  });

  it('the catalog disk fills up: the backup fails clearly and the pool and earlier points are intact', async () => {
    const sb = await makeSandbox({}, { vault: azurite.endpoint, container: 'enospc-catalog' });
    const src = path.join(sb.dir, 'src');
    try {
      await writeTree(src, { 'a.bin': bytes(131, 2_000_000) });
      await sb.strata(['init']);
      const first = await sb.json(['backup', '--path', src]);
      // Move the state directory onto a small file system and fill it.
      const saved = path.join(sb.dir, 'state-saved');
      execFileSync('cp', ['-a', sb.state, saved]);
      await rm(sb.state, { recursive: true });
      await smallFs(sb.state, '2m');
      execFileSync('cp', ['-a', `${saved}/.`, sb.state]);
      // Many small files: a catalog insert per file that cannot fit.
      const many: Record<string, string> = {};
      for (let i = 0; i < 6000; i++) many[`f${i}.txt`] = `file ${i} ${'x'.repeat(i % 50)}`;
      await writeTree(path.join(src, 'many'), many);
      try {
        await writeFile(path.join(sb.state, 'filler'), Buffer.alloc(1_800_000));
      } catch {
        /* full already */
      }
      const r = await sb.strata(['backup', '--path', src]);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n').filter((l) => l.startsWith('strata: error'))).toHaveLength(1);
      await rm(path.join(sb.state, 'filler'), { force: true });
      expect(JSON.parse((await sb.strata(['check', '--read-data', '--json'])).stdout).ok).toBe(true);
      const t = path.join(sb.dir, 'r');
      expect((await sb.strata(['restore', first.recoveryPoint.id, '--target', t])).code).toBe(0);
    } finally {
      await unmount(sb.state).catch(() => {});
      await sb.cleanup();
    }
  });

  it('the vault goes away for a while: no upload is reported done with data missing, and a later run completes', async () => {
    const proxy = await startFaultProxy({ port: azurite.port });
    const sb0 = await makeSandbox();
    const src = path.join(sb0.dir, 'src');
    await writeTree(src, { 'a.bin': bytes(141, 30_000_000) });
    const sb = await makeSandbox(group(src), { vault: proxy.endpoint, container: 'vault-away' });
    try {
      await sb.strata(['init']);
      // Every request fails for a while (more failures than one run's retries can absorb).
      proxy.addRule({ kind: 'status503', count: 200 });
      const r = await sb.strata(['backup', 'g', '--json'], { env: { STRATA_RETRY_BASE_MS: '10', STRATA_RETRY_ATTEMPTS: '3' } });
      const out = JSON.parse(r.stdout);
      expect(out.sources[0].recoveryPoint).toMatch(/^[0-9a-f]{64}$/);
      expect(out.state).toBe('warnings');
      expect(out.cloudError).toBeTruthy();
      const rp = (await sb.json(['recovery-points']))[0];
      expect(rp.cloudState).not.toBe('uploaded');
      proxy.clearRules();
      const done = await sb.json(['replicate'], { env: { STRATA_RETRY_BASE_MS: '10' } });
      expect(done.recoveryPoints).toEqual([rp.id]);
      expect((await sb.json(['check', '--cloud', '--read-data'])).ok).toBe(true);
      expect((await sb.json(['recovery-points']))[0].cloudState).toBe('uploaded');
    } finally {
      await sb.cleanup();
      await sb0.cleanup();
      await proxy.close();
    }
  });
});
