import { randomBytes } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, type Azurite } from '../../test/helpers/azurite.js';
import { objectStoreConformance } from '../store/conformance.js';
import { listAll } from '../store/object-store.js';
import { AzureBlobStore, azureStoreFromVault, createContainerClient } from './azure-store.js';
import { createVaultCredentials, parseVaultCredentials } from './vault-credentials.js';

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
let container: ContainerClient;
let serial = 0;

const sharedKey = { type: 'AccountKey' as const, accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY };

/** A store under a fresh server prefix of the shared test container. */
function freshStore(options: ConstructorParameters<typeof AzureBlobStore>[1] = {}): AzureBlobStore {
  return new AzureBlobStore(container, { prefix: `servers/s${++serial}-${randomBytes(4).toString('hex')}/`, ...options });
}

beforeAll(async () => {
  azurite = await startAzurite();
  container = createContainerClient({ endpoint: azurite.endpoint, container: 'strata-test', auth: sharedKey });
  await new AzureBlobStore(container).ensureContainer();
}, 30_000);

afterAll(async () => {
  await azurite?.stop();
}, 15_000);

objectStoreConformance('azure', async () => ({ store: freshStore() }));
objectStoreConformance('azure (blocks)', async () => ({ store: freshStore({ singlePutLimit: 4, blockSize: 3 }) }));

describe('AzureBlobStore', () => {
  it('writes objects over the single-put limit in blocks, with the right bytes and ranges', { timeout: 20_000 }, async () => {
    const store = freshStore({ singlePutLimit: 1024, blockSize: 256, blockConcurrency: 3 });
    const data = randomBytes(10 * 1024 + 7);
    await store.put('packs/ab/big', data);
    expect((await store.get('packs/ab/big')).equals(data)).toBe(true);
    expect((await store.stat('packs/ab/big')).size).toBe(data.length);
    expect((await store.get('packs/ab/big', { range: { offset: 1000, length: 3000 } })).equals(data.subarray(1000, 4000))).toBe(true);
    const blocks = await container.getBlockBlobClient(`${store.prefix}packs/ab/big`).getBlockList('all');
    expect(blocks.committedBlocks?.length).toBe(41);
    expect(blocks.uncommittedBlocks?.length ?? 0).toBe(0);
    // A small object in the same store still goes in one Put Blob.
    await store.put('packs/ab/small', data.subarray(0, 1024));
    const small = await container.getBlockBlobClient(`${store.prefix}packs/ab/small`).getBlockList('all');
    expect(small.committedBlocks?.length ?? 0).toBe(0);
  });

  it('keeps two server prefixes apart', async () => {
    const a = new AzureBlobStore(container, { prefix: 'servers/iso-a/' });
    const ab = new AzureBlobStore(container, { prefix: 'servers/iso-ab/' });
    await a.put('snapshots/one', Buffer.from('from a'));
    await ab.put('snapshots/one', Buffer.from('from ab'));
    await ab.put('snapshots/two', Buffer.from('only ab'));
    expect((await a.get('snapshots/one')).toString()).toBe('from a');
    expect((await listAll(a, '')).map((o) => o.key)).toEqual(['snapshots/one']);
    expect((await listAll(ab, 'snapshots/')).map((o) => o.key).sort()).toEqual(['snapshots/one', 'snapshots/two']);
    await a.delete('snapshots/one');
    expect((await ab.get('snapshots/one')).toString()).toBe('from ab');
    await expect(a.stat('snapshots/two')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
    expect(a.location).toBe(`${azurite.endpoint}/strata-test/servers/iso-a/`);
    expect(() => new AzureBlobStore(container, { prefix: 'servers/no-slash' })).toThrow();
    expect(() => new AzureBlobStore(container, { prefix: '../x/' })).toThrow();
  });

  it('handles empty objects and zero-length ranges; refuses ranges past the end', async () => {
    const store = freshStore();
    await store.put('k/empty', new Uint8Array(0));
    expect((await store.get('k/empty')).length).toBe(0);
    expect((await store.get('k/empty', { range: { offset: 0, length: 0 } })).length).toBe(0);
    await expect(store.get('k/empty', { range: { offset: 0, length: 1 } })).rejects.toBeInstanceOf(RangeError);
    await store.put('k/ten', Buffer.from('0123456789'));
    await expect(store.get('k/ten', { range: { offset: 10, length: 1 } })).rejects.toBeInstanceOf(RangeError);
    await expect(store.get('k/ten', { range: { offset: 20, length: 1 } })).rejects.toBeInstanceOf(RangeError);
    await expect(store.get('k/ten', { range: { offset: 11, length: 0 } })).rejects.toBeInstanceOf(RangeError);
    expect((await store.get('k/ten', { range: { offset: 10, length: 0 } })).length).toBe(0);
  });

  it('reports a blob whose bytes do not match its stored MD5', async () => {
    const store = freshStore();
    await store.put('k/md5', Buffer.from('payload'));
    await container.getBlockBlobClient(`${store.prefix}k/md5`).setHTTPHeaders({ blobContentMD5: Buffer.alloc(16, 1) });
    await expect(store.get('k/md5')).rejects.toMatchObject({ code: 'STRATA_VAULT_CHECKSUM', kind: 'failed' });
    // A small range is checked with its own transactional MD5, which the service computes: fine.
    expect((await store.get('k/md5', { range: { offset: 1, length: 3 } })).toString()).toBe('ayl');
  });

  it('sets and reads metadata for soft-delete marks', async () => {
    const store = freshStore();
    await store.put('packs/00/p', Buffer.from('x'));
    await store.setMetadata('packs/00/p', { strata_deleted_at: '2026-03-01T00:00:00.000Z' });
    expect(await store.getMetadata('packs/00/p')).toEqual({ strata_deleted_at: '2026-03-01T00:00:00.000Z' });
    await store.setMetadata('packs/00/p', {});
    expect(await store.getMetadata('packs/00/p')).toEqual({});
    await expect(store.setMetadata('packs/00/missing', { a: 'b' })).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
    await expect(store.getMetadata('packs/00/missing')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
    await expect(store.setMetadata('packs/00/p', { strataDeletedAt: 'x' })).rejects.toThrow(/metadata name/);
    await expect(store.setMetadata('packs/00/p', { a: 'é' })).rejects.toThrow(/ASCII/);
  });

  it('maps refused credentials to STRATA_VAULT_AUTH', async () => {
    const bad = createContainerClient({
      endpoint: azurite.endpoint,
      container: 'strata-test',
      auth: { type: 'AccountKey', accountName: AZURITE_ACCOUNT_NAME, accountKey: Buffer.alloc(64, 7).toString('base64') },
    });
    const store = new AzureBlobStore(bad);
    await expect(store.put('k/a', Buffer.from('x'))).rejects.toMatchObject({ code: 'STRATA_VAULT_AUTH', kind: 'input' });
    await expect(store.stat('k/a')).rejects.toMatchObject({ code: 'STRATA_VAULT_AUTH' });
    const err = await rejectionOf(store.get('k/a'));
    expect(err.message).not.toContain(AZURITE_ACCOUNT_KEY);
  });

  it('maps a missing container and an unreachable endpoint', async () => {
    const missing = new AzureBlobStore(createContainerClient({ endpoint: azurite.endpoint, container: 'no-such-container', auth: sharedKey }));
    await expect(missing.put('k/a', Buffer.from('x'))).rejects.toMatchObject({ code: 'STRATA_VAULT_CONTAINER_MISSING' });
    await expect(listAll(missing, '')).rejects.toMatchObject({ code: 'STRATA_VAULT_CONTAINER_MISSING' });
    await expect(missing.get('k/a')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
    await expect(missing.delete('k/a')).rejects.toMatchObject({ code: 'STRATA_VAULT_CONTAINER_MISSING' });
    const closed = new AzureBlobStore(createContainerClient({ endpoint: `http://127.0.0.1:1/${AZURITE_ACCOUNT_NAME}`, container: 'strata-test', auth: sharedKey }));
    const err = await rejectionOf(closed.stat('k/a'));
    expect(err).toMatchObject({ code: 'STRATA_VAULT_NETWORK', kind: 'failed' });
    expect(err.cause).toBeDefined();
  });

  it('rejects with the caller’s reason when aborted mid-request', async () => {
    const store = freshStore({ singlePutLimit: 1024, blockSize: 1024, blockConcurrency: 2 });
    const controller = new AbortController();
    const put = store.put('k/aborted', randomBytes(64 * 1024), { signal: controller.signal });
    controller.abort(new Error('stop now'));
    await expect(put).rejects.toThrow('stop now');
    await expect(store.stat('k/aborted')).rejects.toMatchObject({ code: 'STRATA_NOT_FOUND' });
    const ac = new AbortController();
    ac.abort(new Error('early'));
    await expect(store.get('k/x', { signal: ac.signal })).rejects.toThrow('early');
    await expect(listAll(store, '', { signal: ac.signal })).rejects.toThrow('early');
  });

  it('lists more objects than one page holds, each once', { timeout: 30_000 }, async () => {
    const store = freshStore({ listPageSize: 7 });
    const keys = Array.from({ length: 60 }, (_, i) => `index/${String(i).padStart(3, '0')}`);
    for (let i = 0; i < keys.length; i += 10) await Promise.all(keys.slice(i, i + 10).map((k) => store.put(k, Buffer.from(k))));
    const listed = (await listAll(store, 'index/')).map((o) => o.key);
    expect(listed.sort()).toEqual(keys);
  });

  it('opens the vault named by vault credentials', async () => {
    const xml = createVaultCredentials({ endpoint: azurite.endpoint, container: 'strata-vault-creds' });
    const store = await azureStoreFromVault(parseVaultCredentials(xml), { prefix: 'servers/from-creds/' });
    await store.ensureContainer();
    await store.put('snapshots/x', Buffer.from('hello'));
    expect((await store.get('snapshots/x')).toString()).toBe('hello');
  });
});
