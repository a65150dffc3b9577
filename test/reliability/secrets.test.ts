// Secrets: the passphrase and the keys never appear in logs, job records, error messages, the catalog
// or the vault credentials' copy; files holding secrets are 0600; a readable passphrase file is warned about.
import { chmod, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirStore } from '../../src/store/dir-store.js';
import { Pool } from '../../src/replica/pool.js';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, TEST_PASSPHRASE, type Sandbox } from '../helpers/cli.js';
import { bytes, writeTree } from '../helpers/fs-tree.js';

let azurite: Azurite;
let sb: Sandbox;
const outputs: string[] = [];

beforeAll(async () => {
  azurite = await startAzurite();
  sb = await makeSandbox({}, { vault: azurite.endpoint, container: 'secrets' });
});
afterAll(async () => {
  await sb.cleanup();
  await azurite.stop();
});

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await allFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe('secrets', () => {
  it('never leak into logs, job records, the catalog, errors or the credentials copy', async () => {
    const src = path.join(sb.dir, 'src');
    await writeTree(src, { 'a.bin': bytes(91, 100_000) });
    const run = async (args: string[]) => {
      const r = await sb.strata(args);
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    expect((await run(['init'])).code).toBe(0);
    expect((await run(['backup', '--path', src, '--to', 'both'])).code).toBe(0);
    expect((await run(['check', '--read-data', '--cloud'])).code).toBe(0);
    expect((await run(['restore', 'latest', '--target', path.join(sb.dir, 'r')])).code).toBe(0);
    // Errors on purpose: a wrong passphrase, a bad new passphrase.
    await writeFile(path.join(sb.dir, 'wrong'), 'this is the wrong passphrase\n', { mode: 0o600 });
    await writeFile(path.join(sb.dir, 'short'), 'short\n', { mode: 0o600 });
    expect((await run(['passphrase', 'change', '--new-passphrase-file', path.join(sb.dir, 'short')])).code).toBe(2);
    const pool = await Pool.open(new DirStore(sb.pool), TEST_PASSPHRASE);
    const secrets = [TEST_PASSPHRASE, 'this is the wrong passphrase'];
    for (const k of [pool.keys.encKey, pool.keys.idKey, pool.keys.chunkerKey]) secrets.push(k.toString('hex'), k.toString('base64'));
    const { AZURITE_ACCOUNT_KEY } = await import('../helpers/azurite.js');

    const files = await allFiles(sb.state);
    expect(files.some((f) => f.endsWith('.log'))).toBe(true);
    for (const f of files) {
      const content = await readFile(f);
      for (const s of secrets) expect(content.includes(s), `${s.slice(0, 6)}… found in ${f}`).toBe(false);
      if (!f.endsWith('vault-credentials.xml')) expect(content.includes(AZURITE_ACCOUNT_KEY), `account key in ${f}`).toBe(false);
    }
    for (const o of outputs) for (const s of secrets) expect(o.includes(s)).toBe(false);
    // The credentials copy holds the account key by necessity: it is 0600.
    expect((await stat(path.join(sb.state, 'vault-credentials.xml'))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(sb.dir, 'vault.xml'))).mode & 0o777).toBe(0o600);
    for (const f of await allFiles(path.join(sb.pool, 'keys'))) expect((await stat(f)).mode & 0o077).toBe(0);
  });

  it('a generated passphrase file is 0600, and a passphrase file readable by others is warned about', async () => {
    const fresh = await makeSandbox({}, { vault: azurite.endpoint, container: 'secrets2' });
    try {
      await (await import('node:fs/promises')).rm(fresh.passphraseFile);
      expect((await fresh.strata(['init', '--generate-passphrase'])).code).toBe(0);
      expect((await stat(fresh.passphraseFile)).mode & 0o777).toBe(0o600);
      await chmod(fresh.passphraseFile, 0o644);
      const r = await fresh.strata(['recovery-points']);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/warning: passphrase file .* is readable by group or others .*chmod 600/);
    } finally {
      await fresh.cleanup();
    }
  });
});
