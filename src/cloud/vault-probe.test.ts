import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../../test/helpers/azurite.js';
import { createVaultCredentials, parseVaultCredentials, type VaultCredentials } from './vault-credentials.js';
import { probeVault } from './vault-probe.js';

/** The error `promise` rejects with (fails the test if it resolves). */
async function rejectionOf(promise: Promise<unknown>): Promise<Error & { code?: string; kind?: string; cause?: unknown }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string; kind?: string; cause?: unknown };
  }
  throw new Error('expected a rejection');
}

let azurite: Azurite;
beforeAll(async () => {
  azurite = await startAzurite();
}, 30_000);
afterAll(async () => {
  await azurite?.stop();
}, 15_000);

function creds(endpoint: string, extra: { accountKey?: string; container?: string } = {}): VaultCredentials {
  return parseVaultCredentials(createVaultCredentials({ endpoint, container: extra.container ?? 'probe-vault', ...(extra.accountKey ? { accountKey: extra.accountKey } : {}) }));
}

describe('probeVault', () => {
  it('creates the container once and answers ok with good credentials', async () => {
    const good = creds(azurite.endpoint);
    const first = await probeVault(good, { timeoutMs: 5000 });
    expect(first).toMatchObject({ ok: true, createdContainer: true });
    expect(typeof first.at).toBe('number');
    expect(await probeVault(good, { timeoutMs: 5000 })).toMatchObject({ ok: true, createdContainer: false });
  });

  it('reports a wrong key as STRATA_VAULT_AUTH', async () => {
    const bad = creds(azurite.endpoint, { accountKey: Buffer.alloc(64, 9).toString('base64') });
    const err = await rejectionOf(probeVault(bad, { timeoutMs: 5000 }));
    expect(err).toMatchObject({ code: 'STRATA_VAULT_AUTH', kind: 'input' });
    expect(err.message).toContain(azurite.endpoint);
  });

  it('reports a closed port as STRATA_VAULT_UNREACHABLE within the timeout', async () => {
    const closed = creds(`http://127.0.0.1:1/devstoreaccount1`);
    const started = performance.now();
    const err = await rejectionOf(probeVault(closed, { timeoutMs: 3000 }));
    expect(performance.now() - started).toBeLessThan(3000);
    expect(err).toMatchObject({ code: 'STRATA_VAULT_UNREACHABLE' });
    expect(err.message).toMatch(/127\.0\.0\.1:1.*ECONNREFUSED.*network and proxy/);
  });

  it('reports a server that never answers as STRATA_VAULT_UNREACHABLE after the timeout', { timeout: 10_000 }, async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const started = performance.now();
      const err = await rejectionOf(probeVault(creds(`http://127.0.0.1:${port}/devstoreaccount1`), { timeoutMs: 500 }));
      const elapsed = performance.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(450);
      expect(elapsed).toBeLessThan(3000);
      expect(err).toMatchObject({ code: 'STRATA_VAULT_UNREACHABLE' });
      expect(err.message).toMatch(/did not answer within 0\.5 s/);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('rejects with the caller’s reason when aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('cancelled'));
    await expect(probeVault(creds(azurite.endpoint), { signal: controller.signal })).rejects.toThrow('cancelled');
  });
});
