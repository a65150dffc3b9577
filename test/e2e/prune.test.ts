// End-to-end: retention and prune through the real CLI, with recovery points placed in time (STRATA_FAKE_NOW).
import { readdir, rm, stat, utimes, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { snapshotDir, type Sandbox } from '../helpers/cli.js';
import { registeredSandbox } from '../helpers/daemon.js';
import { bytes, digestTree, writeTree } from '../helpers/fs-tree.js';

let azurite: Azurite;
let sb: Sandbox;
beforeAll(async () => {
  azurite = await startAzurite();
}, 60_000);
afterAll(async () => {
  await azurite?.stop();
});
afterEach(async () => {
  await sb?.cleanup();
});

const DAY = 24 * 60 * 60 * 1000;
const T0 = Date.parse('2030-03-04T10:00:00Z');
const at = (days: number) => ({ env: { STRATA_FAKE_NOW: String(T0 + days * DAY) } });

async function poolBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) total += (await stat(path.join(e.parentPath, e.name))).size;
  return total;
}

interface PruneJson {
  dryRun: boolean;
  manifestsDeleted: string[];
  packsDeleted: string[];
  packsRepacked: string[];
  packsWritten: string[];
  unreferencedPacksDeleted: string[];
  unreferencedPacksKept: number;
  bytesFreed: number;
  retention: { kept: { id: string; reasons: string[] }[]; removed: { id: string }[] };
}

describe('strata prune', () => {
  it('removes the recovery points retention lets go, never the latest, and frees their space', async () => {
    sb = await registeredSandbox(azurite, { protectionGroups: [{ name: 'g', sources: [{ path: 'data' }], disk: { syncFrequency: '0 * * * *', retentionDays: 2 } }] });
    const data = path.join(sb.dir, 'data');
    const rp = async (days: number, files: Record<string, Buffer | string>) => {
      await rm(data, { recursive: true, force: true });
      await writeTree(data, files);
      return (await sb.json<{ recoveryPoint: { id: string } }>(['backup', 'g'], at(days))).recoveryPoint.id;
    };
    const rp0 = await rp(0, { 'a.bin': bytes(1, 20_000_000), 'keep.txt': 'kept all along' });
    const rp1 = await rp(1, { 'b.bin': bytes(2, 20_000_000), 'keep.txt': 'kept all along' });
    const rp2 = await rp(5, { 'c.bin': bytes(3, 20_000_000), 'keep.txt': 'kept all along' });
    await writeTree(path.join(sb.dir, 'adhoc'), { 'x.txt': 'ad hoc' });
    const adhoc = (await sb.json<{ recoveryPoint: { id: string } }>(['backup', '--path', path.join(sb.dir, 'adhoc')], at(0))).recoveryPoint.id;

    // --dry-run reports and changes nothing.
    const before = await snapshotDir(sb.pool);
    const dry = await sb.json<PruneJson>(['prune', '--dry-run'], at(5));
    expect(dry.dryRun).toBe(true);
    expect(dry.retention.removed.map((p) => p.id).sort()).toEqual([rp0, rp1].sort());
    expect(dry.bytesFreed).toBeGreaterThan(39_000_000);
    expect(await snapshotDir(sb.pool)).toEqual(before);

    const size = await poolBytes(sb.pool);
    const pruned = await sb.json<PruneJson>(['prune'], at(5));
    expect(pruned.manifestsDeleted.sort()).toEqual([rp0, rp1].sort());
    expect(pruned.retention.kept).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: rp2, reasons: ['latest', 'disk'] }), expect.objectContaining({ id: adhoc, reasons: ['latest', 'no-policy'] })]),
    );
    expect(pruned.packsDeleted.length).toBeGreaterThanOrEqual(2);
    const freed = size - (await poolBytes(sb.pool));
    expect(freed).toBeGreaterThan(39_000_000);
    expect(pruned.bytesFreed).toBe(freed);
    expect((await sb.json<{ id: string }[]>(['recovery-points'])).map((r) => r.id).sort()).toEqual([rp2, adhoc].sort());
    expect((await sb.json<{ ok: boolean }>(['check', '--read-data'])).ok).toBe(true);
    const target = path.join(sb.dir, 'r2');
    await sb.json(['restore', rp2, '--target', target]);
    expect(await digestTree(target)).toEqual(await digestTree(data));

    // Long after: the latest point of each source is still kept, whatever the retention.
    const late = await sb.json<PruneJson>(['prune'], at(400));
    expect(late.manifestsDeleted).toEqual([]);
    expect((await sb.json<{ id: string }[]>(['recovery-points'])).map((r) => r.id).sort()).toEqual([rp2, adhoc].sort());

    // The history has the prune jobs.
    const jobs = await sb.json<{ kind: string; state: string }[]>(['jobs']);
    expect(jobs.filter((j) => j.kind.startsWith('prune')).map((j) => `${j.kind} ${j.state}`)).toEqual(['prune completed', 'prune completed', 'prune --dry-run completed']);
  }, 120_000);

  it('repacks packs that are mostly garbage and removes old packs nothing references; catalog rebuild still restores', async () => {
    sb = await registeredSandbox(azurite, { protectionGroups: [{ name: 'g', sources: [{ path: 'data' }], disk: { syncFrequency: '0 * * * *', retentionDays: 1 } }] });
    const data = path.join(sb.dir, 'data');
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 12; i++) files[`f${i}.bin`] = bytes(10 + i, 1024 * 1024);
    await writeTree(data, files);
    await sb.json(['backup', 'g'], at(0));
    for (let i = 2; i < 12; i++) await rm(path.join(data, `f${i}.bin`));
    const kept = (await sb.json<{ recoveryPoint: { id: string } }>(['backup', 'g'], at(1))).recoveryPoint.id;

    // Packs no index names: an old one (left by an interrupted backup), and a recent one (a backup may be writing it).
    const oldPack = 'ab'.repeat(32);
    const newPack = 'cd'.repeat(32);
    for (const id of [oldPack, newPack]) {
      await mkdir(path.join(sb.pool, 'packs', id.slice(0, 2)), { recursive: true });
      await writeFile(path.join(sb.pool, 'packs', id.slice(0, 2), id), bytes(99, 100_000));
    }
    const now = new Date(T0 + 5 * DAY);
    await utimes(path.join(sb.pool, 'packs', 'cd', newPack), now, now);
    await utimes(path.join(sb.pool, 'packs', 'ab', oldPack), new Date(now.getTime() - 2 * 3600_000), new Date(now.getTime() - 2 * 3600_000));

    const size = await poolBytes(sb.pool);
    const pruned = await sb.json<PruneJson>(['prune'], at(5));
    expect(pruned.manifestsDeleted).toHaveLength(1);
    expect(pruned.packsRepacked).toHaveLength(1);
    expect(pruned.packsWritten).toHaveLength(1);
    expect(pruned.unreferencedPacksDeleted).toEqual([oldPack]);
    expect(pruned.unreferencedPacksKept).toBe(1);
    expect(size - (await poolBytes(sb.pool))).toBeGreaterThan(9 * 1024 * 1024);

    const check = await sb.json<{ ok: boolean; unreferencedPacks: string[] }>(['check', '--read-data']);
    expect(check.ok).toBe(true);
    expect(check.unreferencedPacks).toEqual([newPack]);
    for (const [i, step] of ['restore', 'rebuild'].entries()) {
      if (step === 'rebuild') await sb.json(['catalog', 'rebuild']);
      const target = path.join(sb.dir, `r${i}`);
      await sb.json(['restore', kept, '--target', target]);
      expect(await digestTree(target)).toEqual(await digestTree(data));
    }
    // Nothing left to do: a second prune changes nothing.
    const again = await sb.json<PruneJson>(['prune'], at(5));
    expect([again.packsDeleted, again.packsRepacked, again.manifestsDeleted]).toEqual([[], [], []]);
  }, 120_000);
});
