// The gating table end to end: connectivity lost for more than 15 days, an expired subscription, a
// deprovisioned one, and the way back to active. Time is placed with STRATA_FAKE_NOW.
import Database from 'better-sqlite3';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, type Sandbox } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { bytes, writeTree } from '../helpers/fs-tree.js';

const DAY = 24 * 60 * 60 * 1000;
let azurite: Azurite;
beforeAll(async () => {
  azurite = await startAzurite();
});
afterAll(async () => {
  await azurite.stop();
});

async function sandbox(vault: string, container: string): Promise<{ sb: Sandbox; src: string }> {
  const sb0 = await makeSandbox({}, {});
  const src = path.join(sb0.dir, 'data');
  await writeTree(src, { 'a.bin': bytes(81, 300_000), 'b.txt': 'bee' });
  const sb = await makeSandbox(
    {
      protectionGroups: [
        {
          name: 'g',
          sources: [{ path: src }],
          disk: { syncFrequency: '*/15 * * * *', retentionDays: 14 },
          online: { schedule: '0 21 * * *', retention: { daily: 30 } },
        },
      ],
    },
    { vault, container },
  );
  await sb.strata(['init']);
  const cleanup = sb.cleanup;
  sb.cleanup = async () => {
    await cleanup();
    await sb0.cleanup();
  };
  return { sb, src };
}

async function setSubscription(sb: Sandbox, state: string): Promise<void> {
  const cfg = JSON.parse(await readFile(sb.config, 'utf8'));
  cfg.subscription = { provider: 'static', state };
  await writeFile(sb.config, JSON.stringify(cfg, null, 2));
}

function jobs(sb: Sandbox): { kind: string; state: string; error: string | null }[] {
  const db = new Database(path.join(sb.state, 'catalog.db'), { readonly: true });
  try {
    return db.prepare('SELECT kind, state, error FROM jobs ORDER BY id').all() as { kind: string; state: string; error: string | null }[];
  } finally {
    db.close();
  }
}

describe('gating', () => {
  it('16 days without contact stops backups and keeps restores; under 15 days disk work goes on', async () => {
    const proxy = await startFaultProxy({ port: azurite.port });
    const { sb } = await sandbox(proxy.endpoint, 'lost');
    try {
      const first = await sb.json(['backup', 'g']);
      expect(first.state).toBe('completed');
      await proxy.close(); // Azure unreachable from now on

      // 3 days later: the disk recovery point is made, the upload waits (pending) and is retried later.
      const in3 = { STRATA_FAKE_NOW: new Date(Date.now() + 3 * DAY).toISOString(), STRATA_RETRY_ATTEMPTS: '1' };
      const r3 = await sb.strata(['backup', 'g', '--json'], { env: in3 });
      expect(r3.code, r3.stderr).toBe(0);
      const out3 = JSON.parse(r3.stdout);
      expect(out3.state).toBe('warnings');
      expect(out3.cloudError).toMatch(/STRATA_VAULT_UNREACHABLE|STRATA_VAULT_NETWORK/);
      const pending = (await sb.json(['recovery-points'], { env: in3 })).at(-1);
      expect(pending.diskState).toBe('present');
      expect(['pending', 'uploading']).toContain(pending.cloudState);

      // 16 days after the last contact: backups stop, with a message naming the rule and what lifts it.
      const in16 = { STRATA_FAKE_NOW: new Date(Date.now() + 16 * DAY).toISOString() };
      const refused = await sb.strata(['backup', 'g'], { env: in16 });
      expect(refused.code).toBe(3);
      const line = refused.stderr.trim().split('\n').filter((l) => l.startsWith('strata: error'));
      expect(line).toHaveLength(1);
      expect(line[0]).toMatch(/STRATA_GATE_REFUSED: backup to disk stopped: connectivity to Azure lost .*restores from disk and cloud remain allowed/);
      const status = await sb.strata(['cloud', 'status', '--json'], { env: in16 });
      expect(status.code).toBe(1); // like Get-DPMCloudConnection: not connected
      const s = JSON.parse(status.stdout);
      expect(s.connectivity).toBe('lost');
      expect(s.decisions['backup-disk'].allowed).toBe(false);
      expect(s.decisions['restore-disk'].allowed).toBe(true);
      expect(s.decisions['restore-cloud'].allowed).toBe(true);
      const restore = await sb.strata(['restore', 'latest', '--target', path.join(sb.dir, 'r16')], { env: in16 });
      expect(restore.code, restore.stderr).toBe(0);
      expect(jobs(sb).filter((j) => j.state === 'skipped').map((j) => j.kind)).toContain('backup');
    } finally {
      await sb.cleanup();
    }
  });

  it('an expired subscription stops backups and keeps restores; active again resumes them', async () => {
    const { sb } = await sandbox(azurite.endpoint, 'expired');
    try {
      await sb.json(['backup', 'g']);
      await setSubscription(sb, 'expired');
      const refused = await sb.strata(['backup', 'g']);
      expect(refused.code).toBe(3);
      expect(refused.stderr).toMatch(/backup to disk stopped: subscription expired \(since \d{4}-\d\d-\d\d\); restores from disk and cloud remain allowed; backups resume when the subscription is active/);
      const adhoc = await sb.strata(['backup', '--path', sb.dir]);
      expect(adhoc.code).toBe(3);
      expect((await sb.strata(['restore', 'latest', '--target', path.join(sb.dir, 'r1')])).code).toBe(0);
      expect((await sb.strata(['restore', 'latest', '--from', 'cloud', '--target', path.join(sb.dir, 'r2')])).code).toBe(0);
      const skipped = jobs(sb).filter((j) => j.state === 'skipped');
      expect(skipped.length).toBe(2);
      expect(skipped[0]!.error).toMatch(/subscription expired/);

      await setSubscription(sb, 'active');
      expect((await sb.json(['backup', 'g'])).state).toBe('completed');
    } finally {
      await sb.cleanup();
    }
  });

  it('deprovisioned: cloud recovery points are marked deleted and every restore is refused; active again restores from disk', async () => {
    const { sb } = await sandbox(azurite.endpoint, 'deprov');
    try {
      const rp = (await sb.json(['backup', 'g'])).recoveryPoint.id;
      expect((await sb.json(['recovery-points']))[0].cloudState).toBe('uploaded');
      await setSubscription(sb, 'deprovisioned');
      const disk = await sb.strata(['restore', rp, '--target', path.join(sb.dir, 'r1')]);
      expect(disk.code).toBe(3);
      expect(disk.stderr).toMatch(/restore from disk stopped: subscription deprovisioned/);
      const cloud = await sb.strata(['restore', rp, '--from', 'cloud', '--target', path.join(sb.dir, 'r2')]);
      expect(cloud.code).toBe(3);
      expect(cloud.stderr).toMatch(/deleted|deprovisioned/);
      const list = await sb.json(['recovery-points']);
      expect(list[0].cloudState).toBe('deleted');
      expect((await sb.strata(['backup', 'g'])).code).toBe(3);

      await setSubscription(sb, 'active');
      const back = await sb.strata(['restore', rp, '--target', path.join(sb.dir, 'r3')]);
      expect(back.code, back.stderr).toBe(0);
      const refusedCloud = await sb.strata(['restore', rp, '--from', 'cloud', '--target', path.join(sb.dir, 'r4')]);
      expect(refusedCloud.code).toBe(3);
      expect(refusedCloud.stderr).toMatch(/STRATA_RP_CLOUD_DELETED/);
      expect((await sb.json(['backup', 'g'])).state).toBe('completed');
    } finally {
      await sb.cleanup();
    }
  });
});

describe('gating of scheduled runs (the real daemon, schedules on a fast clock)', () => {
  it('an expired subscription skips a scheduled backup (recorded as skipped, not queued); active again, the next scheduled run completes', async () => {
    const { fastSchedules, registeredSandbox, startDaemonProcess, waitFor } = await import('../helpers/daemon.js');
    const base = await makeSandbox();
    const src = path.join(base.dir, 'data');
    await writeTree(src, { 'a.txt': 'scheduled' });
    const sb = await registeredSandbox(azurite, {
      protectionGroups: [{ name: 'sched', sources: [{ path: src }], disk: { syncFrequency: '*/15 * * * *', retentionDays: 14 } }],
      subscription: { provider: 'static', state: 'expired' },
    });
    // 900×: a 15-minute schedule fires every second (from noon: the 03:30 prune stays out of the way).
    const env = fastSchedules(900);
    try {
      let d = await startDaemonProcess(sb, { env });
      try {
        await waitFor('a scheduled run to be skipped', () => jobs(sb).some((j) => j.state === 'skipped' && /subscription expired/.test(j.error ?? '')), { timeoutMs: 60_000 });
      } finally {
        await d.stop();
      }
      const skipped = jobs(sb).filter((j) => j.state === 'skipped');
      expect(skipped.length).toBeGreaterThan(0);
      expect(jobs(sb).filter((j) => j.kind === 'backup' && j.state === 'completed')).toHaveLength(0);
      expect(await sb.json(['recovery-points'])).toEqual([]);

      await setSubscription(sb, 'active');
      d = await startDaemonProcess(sb, { env });
      try {
        await waitFor('a scheduled run to complete', () => jobs(sb).some((j) => j.kind === 'backup' && j.state === 'completed'), { timeoutMs: 60_000 });
      } finally {
        await d.stop();
      }
      // Nothing refused earlier was replayed in a burst: runs after the change, one at a time.
      expect((await sb.json(['recovery-points'])).length).toBeGreaterThan(0);
    } finally {
      await sb.cleanup();
      await base.cleanup();
    }
  });
});
