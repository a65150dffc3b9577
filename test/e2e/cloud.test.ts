// End-to-end against a real Blob endpoint (Azurite): replication, alternate-server restore, resume
// after kill -9, repair of a damaged local pack, and convergence through a fault-injecting proxy.
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, spawnCli, TEST_PASSPHRASE, type Sandbox } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { bytes, digestTree, text, writeTree } from '../helpers/fs-tree.js';

let azurite: Azurite;
beforeAll(async () => {
  azurite = await startAzurite();
});
afterAll(async () => {
  await azurite.stop();
});

// More attempts than the proxy injects faults in all (12): convergence is then guaranteed, not a matter of luck.
const FAST_RETRY = { STRATA_RETRY_BASE_MS: '20', STRATA_RETRY_ATTEMPTS: '13' };

function group(name: string, source: string) {
  return {
    protectionGroups: [
      {
        name,
        sources: [{ path: source }],
        disk: { syncFrequency: '*/15 * * * *', retentionDays: 14 },
        online: { schedule: '0 21 * * *', retention: { daily: 30 } },
      },
    ],
  };
}

async function packFiles(pool: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(path.join(pool, 'packs'))) for (const f of await readdir(path.join(pool, 'packs', d))) out.push(path.join(pool, 'packs', d, f));
  return out;
}

describe('the cloud copy', () => {
  it('backup → vault → wipe the server → alternate server restores byte for byte', async () => {
    const src = path.join(await tmpDir(), 'data');
    await writeTree(src, { 'a.bin': bytes(41, 3_000_000), docs: { 'r.txt': text(42, 400_000), 'empty': '' }, 'l': { symlink: 'a.bin' } });
    const sb = await makeSandbox(group('files', src), { vault: azurite.endpoint, container: 'alt-server' });
    await sb.strata(['init']);
    const backup = await sb.json(['backup', 'files']);
    expect(backup.state).toBe('completed');
    expect(backup.cloud.packsUploaded).toBeGreaterThan(0);
    const rp = backup.recoveryPoint.id as string;
    const list = await sb.json(['recovery-points']);
    expect(list[0]).toMatchObject({ id: rp, diskState: 'present', cloudState: 'uploaded' });
    const reg = JSON.parse(await readFile(path.join(sb.state, 'vault-credentials.xml'), 'utf8').then(() => '{}'));
    void reg;
    const serverId = (await sb.json(['cloud', 'status'])).serverId as string;
    const want = await digestTree(src);

    // The server is lost: pool, catalog and state gone. Only the credentials and the passphrase survive.
    const creds = await readFile(path.join(sb.dir, 'vault.xml'));
    await sb.cleanup();

    const alt = await makeSandbox({}, { passphrase: TEST_PASSPHRASE });
    await writeFile(path.join(alt.dir, 'vault.xml'), creds, { mode: 0o600 });
    expect((await alt.strata(['register', '--vault-credentials', path.join(alt.dir, 'vault.xml'), '--server-id', serverId])).code).toBe(0);
    const rebuilt = await alt.json(['catalog', 'rebuild', '--from', 'cloud']);
    expect(rebuilt.recoveryPoints).toBe(1);
    const altList = await alt.json(['recovery-points']);
    expect(altList[0]).toMatchObject({ id: rp, cloudState: 'uploaded', diskState: 'absent' });
    const target = path.join(alt.dir, 'restored');
    const restored = await alt.json(['restore', rp.slice(0, 10), '--from', 'cloud', '--target', target]);
    expect(restored.bytesFetched).toBeGreaterThan(0);
    expect(await digestTree(target)).toEqual(want);
    // The recovery folder in scratch is emptied.
    expect((await readdir(alt.scratch)).filter((n) => n.startsWith('recovery-'))).toEqual([]);

    // A second fresh server, without taking over the identity: --server and that server's passphrase.
    const other = await makeSandbox({}, { passphrase: 'a different passphrase for this box' });
    await writeFile(path.join(other.dir, 'vault.xml'), creds, { mode: 0o600 });
    await other.strata(['register', '--vault-credentials', path.join(other.dir, 'vault.xml')]);
    const passFile = path.join(other.dir, 'their-passphrase');
    await writeFile(passFile, TEST_PASSPHRASE + '\n', { mode: 0o600 });
    const theirs = await other.json(['recovery-points', '--server', serverId, '--passphrase-file', passFile]);
    expect(theirs.map((r: { id: string }) => r.id)).toEqual([rp]);
    const t2 = path.join(other.dir, 'one-item');
    await other.json(['restore', rp, '--from', 'cloud', '--server', serverId, '--passphrase-file', passFile, '--item', 'docs/r.txt', '--target', t2]);
    expect((await readFile(path.join(t2, 'r.txt'))).equals(await readFile(path.join(target, 'docs', 'r.txt')))).toBe(true);
    await alt.cleanup();
    await other.cleanup();
  });

  it('a replication killed with kill -9 mid-upload resumes without re-sending finished packs', async () => {
    const proxy = await startFaultProxy({ port: azurite.port });
    const src = path.join(await tmpDir(), 'data');
    await writeTree(src, { 'x1.bin': bytes(51, 30_000_000), 'x2.bin': bytes(52, 30_000_000), 'x3.bin': bytes(53, 20_000_000) });
    const sb = await makeSandbox(group('big', src), { vault: proxy.endpoint, container: 'resume' });
    try {
      await sb.strata(['init']);
      const child = spawnCli(['backup', 'big', '--config', sb.config], { env: { STRATA_CRASH_POINT: 'replication-pack-uploaded#2' } });
      child.stdout?.resume();
      child.stderr?.resume();
      const signal = await new Promise((resolve) => child.on('close', (_c, s) => resolve(s)));
      expect(signal).toBe('SIGKILL');
      const before = await sb.json(['recovery-points']);
      expect(before[0].cloudState).toBe('uploading'); // disk point committed, cloud not yet
      const isPackPut = (e: { method: string; path: string }) => e.method === 'PUT' && /\/packs\//.test(e.path) && !/comp=/.test(e.path);
      const putBeforeKill = proxy.log.filter(isPackPut).map((e) => e.path.split('?')[0]);
      const logAtKill = proxy.log.length;

      const resumed = await sb.json(['replicate']);
      expect(resumed.recoveryPoints).toEqual([before[0].id]);
      const packs = await packFiles(sb.pool);
      // The two packs recorded as uploaded before the kill are not considered again; the rest are
      // either found already in the vault (stat) or sent now.
      expect(resumed.packsUploaded + resumed.packsAlreadyThere).toBe(packs.length - 2);
      const putAfter = proxy.log.slice(logAtKill).filter(isPackPut).map((e) => e.path.split('?')[0]);
      expect(putAfter.length).toBe(resumed.packsUploaded);
      // A pack is sent again only if its first PUT was cut by the kill (at most the other workers' in-flight ones).
      const resent = putAfter.filter((p) => putBeforeKill.includes(p));
      expect(resent.length).toBeLessThanOrEqual(3);
      expect(new Set([...putBeforeKill, ...putAfter]).size).toBe(packs.length);
      const check = await sb.json(['check', '--cloud', '--read-data']);
      expect(check.ok).toBe(true);
      expect((await sb.json(['recovery-points']))[0].cloudState).toBe('uploaded');
    } finally {
      await sb.cleanup();
      await proxy.close();
    }
  });

  it('a damaged local pack is repaired from the vault; a pack lost in the vault is uploaded again', async () => {
    const src = path.join(await tmpDir(), 'data');
    await writeTree(src, { 'a.bin': bytes(61, 2_000_000), 'b.txt': text(62, 100_000) });
    const sb = await makeSandbox(group('g', src), { vault: azurite.endpoint, container: 'repair' });
    try {
      await sb.strata(['init']);
      const rp = (await sb.json(['backup', 'g'])).recoveryPoint.id;
      const [pack] = await packFiles(sb.pool);
      const data = await readFile(pack!);
      data[500]! ^= 0xff;
      await writeFile(pack!, data);
      expect((await sb.strata(['check', '--read-data'])).code).toBe(1);

      const repaired = await sb.json(['repair']);
      expect(repaired.localRepaired).toEqual([`pack ${path.basename(pack!)}`]);
      expect(repaired.checkAfter.ok).toBe(true);
      expect((await sb.json(['check', '--read-data'])).ok).toBe(true);
      const target = path.join(sb.dir, 'r');
      await sb.json(['restore', rp, '--target', target]);
      expect(await digestTree(target)).toEqual(await digestTree(src));

      // Now lose it in the vault: check --cloud finds it, repair uploads it again.
      const { AzureBlobStore, createContainerClient } = await import('../../src/cloud/azure-store.js');
      const { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME } = await import('../helpers/azurite.js');
      const serverId = (await sb.json(['cloud', 'status'])).serverId;
      const container = createContainerClient({ endpoint: azurite.endpoint, container: 'repair', auth: { type: 'AccountKey', accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY } });
      const vault = new AzureBlobStore(container, { prefix: `servers/${serverId}/` });
      const id = path.basename(pack!);
      await vault.delete(`packs/${id.slice(0, 2)}/${id}`);
      const broken = await sb.strata(['check', '--cloud', '--json']);
      expect(broken.code).toBe(1);
      expect(JSON.parse(broken.stdout).cloud.catalogMismatches).toEqual([{ pack: id, problem: 'missing in the vault' }]);
      const again = await sb.json(['repair']);
      expect(again.vaultRepaired).toEqual([`packs/${id.slice(0, 2)}/${id}`]);
      expect((await sb.json(['check', '--cloud', '--read-data'])).ok).toBe(true);
    } finally {
      await sb.cleanup();
    }
  });

  it('replication through 503s, 500s and resets converges with nothing lost or duplicated, and reports its retries', async () => {
    const proxy: FaultProxy = await startFaultProxy({ port: azurite.port }, { seed: 7 });
    const src = path.join(await tmpDir(), 'data');
    await writeTree(src, { 'big.bin': bytes(71, 40_000_000), small: { 'a.txt': 'a', 'b.txt': text(72, 50_000) } });
    const sb = await makeSandbox(group('f', src), { vault: proxy.endpoint, container: 'faults' });
    try {
      await sb.strata(['init']);
      proxy.addRule({ kind: 'status503', count: 4, probability: 0.3, withinFirst: 60 });
      proxy.addRule({ kind: 'status500', count: 3, probability: 0.3, withinFirst: 60 });
      proxy.addRule({ kind: 'resetRequest', count: 3, probability: 0.3, withinFirst: 60 });
      proxy.addRule({ kind: 'resetResponse', count: 2, probability: 0.3, withinFirst: 60, method: 'PUT' });
      const r = await sb.strata(['backup', 'f', '--json'], { env: FAST_RETRY, timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      const injected = Object.values(proxy.stats.faults).reduce((a, b) => a + b, 0);
      expect(injected).toBeGreaterThan(0);
      expect(out.cloudError, JSON.stringify(out.cloudError)).toBeUndefined();
      expect(out.state).toBe('completed');
      expect(out.cloud.retries).toBeGreaterThan(0);
      proxy.clearRules();
      const check = await sb.json(['check', '--cloud', '--read-data']);
      expect(check.ok).toBe(true);
      expect(check.cloud.recoveryPoints).toBe(1);
      expect(check.cloud.packs).toBe((await packFiles(sb.pool)).length);
    } finally {
      await sb.cleanup();
      await proxy.close();
    }
  });
});

const dirs: string[] = [];
async function tmpDir(): Promise<string> {
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const d = await mkdtemp(path.join(tmpdir(), 'strata-cloud-src-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
