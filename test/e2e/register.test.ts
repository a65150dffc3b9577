// Registration: every way a vault credentials file can be wrong ends in one clear line with a stable
// code, and a server backs up nothing (not even to disk) before it is registered.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContainerClient } from '../../src/cloud/azure-store.js';
import { createVaultCredentials } from '../../src/cloud/vault-credentials.js';
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, type Sandbox } from '../helpers/cli.js';

let azurite: Azurite;
let sb: Sandbox;
beforeAll(async () => {
  azurite = await startAzurite();
  sb = await makeSandbox();
});
afterAll(async () => {
  await sb.cleanup();
  await azurite.stop();
});

function oneLine(stderr: string, code: string): void {
  const lines = stderr.trim().split('\n').filter((l) => l.startsWith('strata: error'));
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toContain(code);
}

async function creds(name: string, options: Parameters<typeof createVaultCredentials>[0]): Promise<string> {
  const file = path.join(sb.dir, name);
  await writeFile(file, createVaultCredentials(options), { mode: 0o600 });
  return file;
}

describe('registration', () => {
  it('is required before any backup, even to disk', async () => {
    await sb.strata(['init']);
    const r = await sb.strata(['backup', '--path', sb.dir]);
    expect(r.code).toBe(2);
    oneLine(r.stderr, 'STRATA_NOT_REGISTERED');
    expect(r.stderr).toMatch(/strata register --vault-credentials/);
  });

  it('refuses malformed, expired, unreachable and refused credentials, each with its code', async () => {
    const malformed = path.join(sb.dir, 'bad.xml');
    await writeFile(malformed, '<RSBackupVaultAADCreds><ResourceName>x</ResourceName>');
    let r = await sb.strata(['register', '--vault-credentials', malformed]);
    expect(r.code).toBe(2);
    oneLine(r.stderr, 'STRATA_VAULT_CREDENTIALS_MALFORMED');

    const expired = await creds('expired.xml', { endpoint: azurite.endpoint, container: 'reg', validDays: 1, now: Date.now() - 3 * 86_400_000 });
    r = await sb.strata(['register', '--vault-credentials', expired]);
    expect(r.code).toBe(2);
    oneLine(r.stderr, 'STRATA_VAULT_CREDENTIALS_EXPIRED');

    const unreachable = await creds('unreachable.xml', { endpoint: 'http://127.0.0.1:1/devstoreaccount1', container: 'reg' });
    r = await sb.strata(['register', '--vault-credentials', unreachable]);
    expect(r.code).toBe(1);
    oneLine(r.stderr, 'STRATA_VAULT_UNREACHABLE');

    const wrongKey = await creds('wrongkey.xml', { endpoint: azurite.endpoint, container: 'reg', accountKey: Buffer.alloc(64, 7).toString('base64') });
    r = await sb.strata(['register', '--vault-credentials', wrongKey]);
    expect(r.code).toBe(2);
    oneLine(r.stderr, 'STRATA_VAULT_AUTH');

    const missing = await sb.strata(['register', '--vault-credentials', path.join(sb.dir, 'nope.xml')]);
    expect(missing.code).toBe(2);
    oneLine(missing.stderr, 'STRATA_VAULT_CREDENTIALS_MISSING');
    // None of it registered the server.
    expect((await sb.strata(['cloud', 'status', '--json', '--no-probe'])).stdout).toMatch(/"registered": false/);
  });

  it('registers, is idempotent, and refuses another vault', async () => {
    const good = await creds('good.xml', { endpoint: azurite.endpoint, container: 'reg' });
    const first = await sb.json(['register', '--vault-credentials', good]);
    const again = await sb.json(['register', '--vault-credentials', good]);
    expect(again.serverId).toBe(first.serverId);
    const other = await creds('other.xml', { endpoint: azurite.endpoint, container: 'reg-other' });
    const r = await sb.strata(['register', '--vault-credentials', other]);
    expect(r.code).toBe(2);
    oneLine(r.stderr, 'STRATA_VAULT_MISMATCH');
    expect(await readFile(path.join(sb.state, 'vault-credentials.xml'), 'utf8')).toBe(await readFile(good, 'utf8'));
    const data = path.join(sb.dir, 'data');
    await (await import('node:fs/promises')).mkdir(data, { recursive: true });
    await writeFile(path.join(data, 'a.txt'), 'registered now');
    expect((await sb.json(['backup', '--path', data])).state).toBe('completed');
  });

  it('allows at most 50 servers per vault', async () => {
    const container = createContainerClient({ endpoint: azurite.endpoint, container: 'full-vault', auth: { type: 'AccountKey', accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY } });
    await container.createIfNotExists();
    for (let i = 0; i < 50; i++) await container.getBlockBlobClient(`servers/server-${i}/server.json`).upload('{}', 2);
    const fresh = await makeSandbox();
    try {
      const file = path.join(fresh.dir, 'full.xml');
      await writeFile(file, createVaultCredentials({ endpoint: azurite.endpoint, container: 'full-vault' }), { mode: 0o600 });
      const r = await fresh.strata(['register', '--vault-credentials', file]);
      expect(r.code).toBe(2);
      oneLine(r.stderr, 'STRATA_VAULT_FULL');
      // One of the 50 may still register again (recovery onto new hardware).
      const back = await fresh.strata(['register', '--vault-credentials', file, '--server-id', 'server-7']);
      expect(back.code, back.stderr).toBe(0);
    } finally {
      await fresh.cleanup();
    }
  });
});
