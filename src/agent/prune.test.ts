import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bytes, writeTree } from '../../test/helpers/fs-tree.js';
import { FakeClock } from '../clock.js';
import type { StrataConfig } from '../config/types.js';
import { backupDirectory } from '../replica/backup.js';
import { AgentContext } from './context.js';
import { initPool } from './jobs.js';
import { runPrune, type DeletedObjects } from './prune.js';

const DAY = 86_400_000;
let dir: string;
let ctx: AgentContext;
let clock: FakeClock;

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'strata-prunejob-'));
  clock = new FakeClock(Date.parse('2030-01-10T12:00:00Z'));
  const config: StrataConfig = {
    stateDir: path.join(dir, 'state'),
    pool: path.join(dir, 'pool'),
    scratch: path.join(dir, 'scratch'),
    passphraseFile: path.join(dir, 'pass'),
    protectionGroups: [{ name: 'g', sources: [{ path: path.join(dir, 'src') }], disk: { syncFrequency: '0 * * * *', retentionDays: 3 } }],
    subscription: { provider: 'static', state: 'active' },
    timezone: 'UTC',
  };
  writeFileSync(config.passphraseFile, 'correct horse battery staple 42\n', { mode: 0o600 });
  ctx = new AgentContext(config, { clock });
  await initPool(ctx);
});
afterEach(() => {
  ctx.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('runPrune', () => {
  it('applies the group retention, then tells the hook what it deleted, once, after deleting it', async () => {
    const src = path.join(dir, 'src');
    const { pool, catalog } = await ctx.poolAndCatalog();
    const backup = () => backupDirectory(pool, catalog, { group: 'g', source: src, host: 'h', clock });
    await writeTree(src, { 'old.bin': bytes(1, 2_000_000) });
    const old = await backup();
    clock.advance(5 * DAY);
    await rm(path.join(src, 'old.bin'));
    await writeTree(src, { 'new.bin': bytes(2, 2_000_000) });
    const latest = await backup();

    const calls: DeletedObjects[] = [];
    const dry = await runPrune(ctx, { dryRun: true, onDeleted: (d) => void calls.push(d) });
    expect(dry.retention.removed.map((p) => p.id)).toEqual([old.id]);
    expect(calls).toEqual([]);

    const r = await runPrune(ctx, {
      onDeleted: async (d) => {
        calls.push(d);
        // Called after the local deletion: the manifest is gone from the pool already.
        expect(await pool.listManifestIds()).toEqual([latest.id]);
      },
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.manifests).toEqual([old.id]);
    expect(calls[0]!.packs.length).toBeGreaterThanOrEqual(1);
    expect(calls[0]!.packs).toEqual([...r.packsDeleted, ...r.packsRepacked, ...r.unreferencedPacksDeleted]);
    expect(catalog.recoveryPoints().map((p) => p.id)).toEqual([latest.id]);
    expect(catalog.job(r.jobId)).toMatchObject({ kind: 'prune', state: 'completed' });

    // Nothing left: no second call.
    await runPrune(ctx, { onDeleted: (d) => void calls.push(d) });
    expect(calls).toHaveLength(1);
  });
});
