import { createHash, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AzureBlobStore, createContainerClient, type AzureBlobStoreOptions } from '../../src/cloud/azure-store.js';
import { listAll } from '../../src/store/object-store.js';
import { RetryStore, type RetryInfo } from '../../src/store/retry-store.js';
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, startAzurite, type Azurite } from './azurite.js';
import { startFaultProxy, type FaultProxy, type ProxyFaultRule } from './fault-proxy.js';

let azurite: Azurite;
let proxy: FaultProxy | undefined;
const auth = { type: 'AccountKey' as const, accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY };

beforeAll(async () => {
  azurite = await startAzurite();
  await new AzureBlobStore(createContainerClient({ endpoint: azurite.endpoint, container: 'faults', auth })).ensureContainer();
}, 30_000);
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});
afterAll(async () => {
  await azurite?.stop();
}, 15_000);

/** An Azure store reached through a new fault proxy, under its own prefix. */
async function storeThroughProxy(rules: ProxyFaultRule[], options: AzureBlobStoreOptions = {}, seed = 7): Promise<AzureBlobStore> {
  proxy = await startFaultProxy({ port: azurite.port }, { rules, seed });
  const container = createContainerClient({ endpoint: proxy.endpoint, container: 'faults', auth });
  return new AzureBlobStore(container, { prefix: `servers/${randomBytes(4).toString('hex')}/`, requestTimeoutMs: 3000, ...options });
}

const md5 = (data: Uint8Array) => createHash('md5').update(data).digest('hex');

describe('fault proxy with AzureBlobStore and RetryStore', () => {
  it('30 puts and gets all succeed through 503s, 500s and resets on ~30% of the first 40 requests', { timeout: 30_000 }, async () => {
    const within = { withinFirst: 40, probability: 0.1 };
    const store = await storeThroughProxy([
      { kind: 'status503', count: 5, ...within },
      { kind: 'status500', count: 5, ...within },
      { kind: 'resetRequest', count: 3, ...within },
      { kind: 'resetResponse', count: 3, ...within },
    ]);
    const retried: RetryInfo[] = [];
    const retrying = new RetryStore(store, { baseDelayMs: 5, maxDelayMs: 50, maxAttempts: 8, onRetry: (info) => retried.push(info) });
    const objects = Array.from({ length: 30 }, (_, i) => ({ key: `packs/${String(i).padStart(2, '0')}/p${i}`, data: randomBytes(1024 + i * 997) }));
    for (let i = 0; i < objects.length; i += 6) {
      await Promise.all(objects.slice(i, i + 6).map((o) => retrying.put(o.key, o.data)));
    }
    for (const o of objects) expect(md5(await retrying.get(o.key))).toBe(md5(o.data));
    const listed = (await listAll(retrying, 'packs/')).map((o) => o.key);
    expect(listed.length).toBe(30);
    expect(new Set(listed).size).toBe(30);
    expect(listed.sort()).toEqual(objects.map((o) => o.key).sort());

    const faults = proxy!.stats.faults;
    const injected = faults.status503 + faults.status500 + faults.resetRequest + faults.resetResponse;
    expect(injected).toBeGreaterThanOrEqual(6);
    expect(injected).toBeLessThanOrEqual(16);
    expect(faults.status503).toBeGreaterThan(0);
    expect(faults.resetRequest + faults.resetResponse).toBeGreaterThan(0);
    expect(retrying.counters.retries).toBe(injected);
    expect(retrying.counters.gaveUp).toBe(0);
    expect(retried.every((r) => ['STRATA_VAULT_ERROR', 'STRATA_VAULT_NETWORK'].includes((r.error as { code: string }).code))).toBe(true);
  });

  it('puts in blocks survive resets and 503s on block uploads', { timeout: 30_000 }, async () => {
    const store = await storeThroughProxy(
      [
        { kind: 'resetRequest', count: 2, path: /comp=block&/ },
        { kind: 'status503', count: 2, path: /comp=block&/ },
        { kind: 'resetResponse', count: 1, path: /comp=blocklist/ },
      ],
      { singlePutLimit: 4096, blockSize: 1024 },
    );
    const retrying = new RetryStore(store, { baseDelayMs: 5, maxAttempts: 8 });
    const data = randomBytes(20 * 1024 + 3);
    await retrying.put('packs/big', data);
    expect(md5(await retrying.get('packs/big'))).toBe(md5(data));
    expect(proxy!.stats.faults).toMatchObject({ resetRequest: 2, status503: 2, resetResponse: 1 });
    // Concurrent block failures within one attempt make one failed attempt (the first error aborts the rest).
    expect(retrying.counters.byOperation.put).toBeGreaterThanOrEqual(2);
    expect(retrying.counters.byOperation.put).toBeLessThanOrEqual(5);
  });

  it('a put that fails part way leaves nothing visible (atomic)', { timeout: 20_000 }, async () => {
    const store = await storeThroughProxy([{ kind: 'resetRequest', count: 1, path: /comp=blocklist/ }], { singlePutLimit: 1024, blockSize: 512 });
    await expect(store.put('packs/partial', randomBytes(5000))).rejects.toMatchObject({ code: 'STRATA_VAULT_NETWORK' });
    await expect(store.stat('packs/partial')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
    expect(await listAll(store, 'packs/')).toEqual([]);
    const single = await storeThroughProxy([{ kind: 'resetRequest', count: 1, method: 'PUT' }]);
    await expect(single.put('packs/partial', randomBytes(5000))).rejects.toMatchObject({ code: 'STRATA_VAULT_NETWORK' });
    await expect(single.stat('packs/partial')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
  });

  it('a get cut off mid-response is a transient network error, then retried', { timeout: 20_000 }, async () => {
    const store = await storeThroughProxy([]);
    const data = randomBytes(64 * 1024);
    await store.put('packs/cut', data);
    proxy!.addRule({ kind: 'resetResponse', count: 1, method: 'GET' });
    await expect(store.get('packs/cut')).rejects.toMatchObject({ code: 'STRATA_VAULT_NETWORK', kind: 'failed' });
    proxy!.addRule({ kind: 'resetResponse', count: 1, method: 'GET' });
    const retrying = new RetryStore(store, { baseDelayMs: 5 });
    expect(md5(await retrying.get('packs/cut'))).toBe(md5(data));
    expect(retrying.counters.byOperation.get).toBe(1);
  });

  it('a stalled request times out and is retried', { timeout: 20_000 }, async () => {
    const store = await storeThroughProxy([{ kind: 'stall', count: 1, method: 'HEAD', stallMs: 5000 }], { requestTimeoutMs: 300 });
    await store.put('packs/s', Buffer.from('stalled'));
    const retries: RetryInfo[] = [];
    const retrying = new RetryStore(store, { baseDelayMs: 5, onRetry: (info) => retries.push(info) });
    const started = performance.now();
    expect((await retrying.stat('packs/s')).size).toBe(7);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(retries.map((r) => (r.error as { code: string }).code)).toEqual(['STRATA_VAULT_TIMEOUT']);
    expect(proxy!.stats.faults.stall).toBe(1);
  });

  it('records every request and the fault it got', { timeout: 10_000 }, async () => {
    const store = await storeThroughProxy([{ kind: 'status500', count: 1, method: 'GET' }]);
    await store.put('k/a', Buffer.from('x'));
    await expect(store.get('k/a')).rejects.toMatchObject({ code: 'STRATA_VAULT_ERROR', message: expect.stringContaining('HTTP 500 InternalError') });
    expect(proxy!.log.map((e) => [e.method, e.fault])).toEqual([
      ['PUT', undefined],
      ['GET', 'status500'],
    ]);
    expect(proxy!.stats).toMatchObject({ requests: 2, forwarded: 1 });
    // The put carried its MD5 both for the transfer (Content-MD5) and to be stored (x-ms-blob-content-md5).
    const put = proxy!.log[0]!.headers;
    expect(put['content-md5']).toBe(createHash('md5').update('x').digest('base64'));
    expect(put['x-ms-blob-content-md5']).toBe(put['content-md5']);
  });
});
