// Prune and retention reach the vault: expired recovery points and the packs only they used are
// soft-deleted in the vault (marked, still there), and removed 14 days later; what is live stays
// restorable from both copies throughout. Time is placed with STRATA_FAKE_NOW.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureBlobStore, createContainerClient } from '../../src/cloud/azure-store.js';
import { listAll } from '../../src/store/object-store.js';
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, type Sandbox } from '../helpers/cli.js';
import { bytes, digestTree, writeTree } from '../helpers/fs-tree.js';

const DAY = 24 * 60 * 60 * 1000;
const T0 = Date.parse('2026-12-01T10:00:00Z');
const at = (days: number) => ({ STRATA_FAKE_NOW: new Date(T0 + days * DAY).toISOString() });

let azurite: Azurite;
let sb: Sandbox;
let src: string;
beforeAll(async () => {
  azurite = await startAzurite();
});
afterAll(async () => {
  await sb?.cleanup();
  await azurite.stop();
});

describe('prune reaches the vault', () => {
  it('expired points are soft-deleted in the vault, purged after 14 days, and the live point restores throughout', async () => {
    const base = await makeSandbox();
    src = path.join(base.dir, 'data');
    await writeTree(src, { 'old.bin': bytes(151, 20_000_000), 'keep.txt': 'kept across points' });
    sb = await makeSandbox(
      {
        protectionGroups: [
          {
            name: 'g',
            sources: [{ path: src }],
            disk: { syncFrequency: '0 * * * *', retentionDays: 1 },
            online: { schedule: '0 21 * * *', retention: { daily: 7 } },
          },
        ],
      },
      { vault: azurite.endpoint, container: 'prune-cloud' },
    );
    const cleanupBase = base.cleanup;
    try {
      await sb.strata(['init'], { env: at(0) });
      const a = await sb.json(['backup', 'g'], { env: at(0) });
      expect(a.cloud.packsUploaded).toBeGreaterThan(0);
      await rm(path.join(src, 'old.bin'));
      await writeTree(src, { 'new.bin': bytes(152, 3_000_000) });
      const b = await sb.json(['backup', 'g'], { env: at(1) });
      const want = await digestTree(src);

      const serverId = (await sb.json(['cloud', 'status'], { env: at(1) })).serverId;
      const vault = new AzureBlobStore(createContainerClient({ endpoint: azurite.endpoint, container: 'prune-cloud', auth: { type: 'AccountKey', accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY } }), {
        prefix: `servers/${serverId}/`,
      });
      const vaultPacksBefore = (await listAll(vault, 'packs/')).length;

      // Day 10: A is beyond 1 day on disk and 7 days in the cloud, and not the latest: it goes.
      const pruned = await sb.json(['prune'], { env: at(10) });
      expect(pruned.manifestsDeleted).toEqual([a.recoveryPoint.id]);
      expect(pruned.bytesFreed).toBeGreaterThan(15_000_000);
      const list = await sb.json(['recovery-points'], { env: at(10) });
      expect(list.map((r: { id: string }) => r.id)).toEqual([b.recoveryPoint.id]);
      // In the vault: marked, not yet removed.
      const marked = await vault.getMetadata(`snapshots/${a.recoveryPoint.id}`);
      expect(marked['strata_deleted_at']).toBeTruthy();
      expect((await listAll(vault, 'packs/')).length).toBe(vaultPacksBefore);
      const fromVault = await sb.json(['recovery-points', '--server', serverId], { env: at(10) });
      expect(fromVault.map((r: { id: string }) => r.id)).toEqual([b.recoveryPoint.id]);

      // Day 12: a replication purges nothing yet (14 days have not passed).
      const early = await sb.json(['replicate'], { env: at(12) });
      expect(early.purged).toEqual([]);

      // Day 25: the marked objects are removed; the vault stays sound and B restores from it.
      const late = await sb.json(['replicate'], { env: at(25) });
      expect(late.purged).toContain(`snapshots/${a.recoveryPoint.id}`);
      expect(late.purged.some((k: string) => k.startsWith('packs/'))).toBe(true);
      expect((await listAll(vault, 'packs/')).length).toBeLessThan(vaultPacksBefore);
      const check = await sb.json(['check', '--cloud', '--read-data'], { env: at(25) });
      expect(check.ok).toBe(true);
      const target = path.join(sb.dir, 'r');
      await sb.json(['restore', b.recoveryPoint.id, '--from', 'cloud', '--target', target], { env: at(25) });
      expect(await digestTree(target)).toEqual(want);
    } finally {
      await cleanupBase();
    }
  });
});
