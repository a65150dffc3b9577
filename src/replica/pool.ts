// A storage pool opened with its passphrase: its self-description, its keys, and typed access to its
// objects (packs, index segments, manifests, key slots) through any object store.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { open, seal } from '../crypto/aead.js';
import { BLOB_ID_ALGORITHM, blobId, gearTable } from '../crypto/hash.js';
import { createKeySlot, generateMasterKeys, openKeySlot, parseKeySlot, type MasterKeys, type ScryptParams } from '../crypto/keys.js';
import { validatePassphrase } from '../crypto/passphrase.js';
import { IntegrityError, StrataError, isNotFound } from '../errors.js';
import { exists, listAll, type ObjectStore } from '../store/object-store.js';
import { Chunker, DEFAULT_CHUNKER, validateChunkerParams, type ChunkerParams } from './chunker.js';
import { decodeIndexSegment, decodeIndexSegmentRaw, encodeIndexSegment, type IndexSegment, type RawIndexSegment } from './index-segment.js';
import { decodeManifest, encodeManifest, type Manifest } from './manifest.js';

export const POOL_FORMAT = 'strata-pool';
export const POOL_VERSION = 1;
export const PACK_TARGET_BYTES = 16 * 1024 * 1024;

/** strata.json: the plaintext self-description of a pool. */
export interface PoolDescription {
  format: typeof POOL_FORMAT;
  version: number;
  id: string;
  created: string;
  chunker: ChunkerParams & { algorithm: 'fastcdc-gear-normalized' };
  blobId: string;
  encryption: 'aes-256-gcm';
  compression: 'lz4';
  packTargetBytes: number;
}

export const KEYS_PREFIX = 'keys/';
export const PACKS_PREFIX = 'packs/';
export const INDEX_PREFIX = 'index/';
export const SNAPSHOTS_PREFIX = 'snapshots/';
export const LOCKS_PREFIX = 'locks/';

export function packKey(packId: string): string {
  return `${PACKS_PREFIX}${packId.slice(0, 2)}/${packId}`;
}

export function newObjectId(): string {
  return randomBytes(32).toString('hex');
}

const INDEX_AAD = Buffer.from('strata.index.v1:');
const MANIFEST_AAD = Buffer.from('strata.snapshot.v1:');

function aad(prefix: Buffer, id: string): Buffer {
  return Buffer.concat([prefix, Buffer.from(id)]);
}

export interface InitOptions {
  chunker?: ChunkerParams;
  scrypt?: ScryptParams;
  packTargetBytes?: number;
  now: number;
}

export class Pool {
  readonly store: ObjectStore;
  readonly description: PoolDescription;
  readonly keys: MasterKeys;
  /** The key slot the passphrase opened. */
  readonly slotId: string;
  readonly chunker: Chunker;

  private constructor(store: ObjectStore, description: PoolDescription, keys: MasterKeys, slotId: string) {
    this.store = store;
    this.description = description;
    this.keys = keys;
    this.slotId = slotId;
    this.chunker = new Chunker(description.chunker, gearTable(keys.chunkerKey));
  }

  /** Creates a pool in an empty store: strata.json and the first key slot. Refuses a store that already holds a pool. */
  static async init(store: ObjectStore, passphrase: string, options: InitOptions): Promise<Pool> {
    validatePassphrase(passphrase);
    if (await exists(store, 'strata.json')) {
      throw new StrataError('STRATA_POOL_EXISTS', `a pool already exists at ${store.location}; nothing was changed`, { kind: 'usage' });
    }
    const chunker = options.chunker ?? DEFAULT_CHUNKER;
    validateChunkerParams(chunker);
    const description: PoolDescription = {
      format: POOL_FORMAT,
      version: POOL_VERSION,
      id: randomBytes(16).toString('hex'),
      created: new Date(options.now).toISOString(),
      chunker: { algorithm: 'fastcdc-gear-normalized', ...chunker },
      blobId: BLOB_ID_ALGORITHM,
      encryption: 'aes-256-gcm',
      compression: 'lz4',
      packTargetBytes: options.packTargetBytes ?? PACK_TARGET_BYTES,
    };
    const keys = generateMasterKeys();
    const slot = await createKeySlot(keys, passphrase, { now: options.now, host: hostname(), ...(options.scrypt ? { params: options.scrypt } : {}) });
    const slotId = newObjectId();
    // Key slot first: a pool whose strata.json exists always has a way in.
    await store.put(`${KEYS_PREFIX}${slotId}`, Buffer.from(JSON.stringify(slot, null, 2)));
    await store.put('strata.json', Buffer.from(JSON.stringify(description, null, 2) + '\n'));
    return new Pool(store, description, keys, slotId);
  }

  static async readDescription(store: ObjectStore): Promise<PoolDescription> {
    let raw: Buffer;
    try {
      raw = await store.get('strata.json');
    } catch (err) {
      if (isNotFound(err) || (err as { code?: string }).code === 'STRATA_NOT_FOUND') {
        throw new StrataError('STRATA_POOL_MISSING', `no storage pool at ${store.location} (strata.json not found); create one with 'strata init' or fix "pool" in the config`, {
          cause: err,
        });
      }
      throw err;
    }
    let d: PoolDescription;
    try {
      d = JSON.parse(raw.toString('utf8')) as PoolDescription;
      if (d.format !== POOL_FORMAT) throw new Error(`format is ${JSON.stringify(d.format)}`);
      if (d.version !== POOL_VERSION) throw new Error(`version ${String(d.version)} is not supported by this strata (supports ${POOL_VERSION})`);
      validateChunkerParams(d.chunker);
      if (d.blobId !== BLOB_ID_ALGORITHM) throw new Error(`unknown blob id algorithm ${JSON.stringify(d.blobId)}`);
      if (!(d.packTargetBytes > 0)) throw new Error('packTargetBytes missing');
    } catch (err) {
      throw new StrataError('STRATA_POOL_CORRUPT', `pool description ${store.location}/strata.json is damaged: ${(err as Error).message}; restore it from the vault or another copy`, {
        cause: err,
      });
    }
    return d;
  }

  /** Opens a pool with a passphrase, trying every key slot. */
  static async open(store: ObjectStore, passphrase: string): Promise<Pool> {
    const description = await Pool.readDescription(store);
    const slots = await listAll(store, KEYS_PREFIX);
    if (slots.length === 0) throw new StrataError('STRATA_POOL_CORRUPT', `pool ${store.location} has no key slots (keys/ is empty); it cannot be opened`);
    let damaged = 0;
    for (const info of slots) {
      const slotId = info.key.slice(KEYS_PREFIX.length);
      let keys: MasterKeys | null;
      try {
        keys = await openKeySlot(parseKeySlot(await store.get(info.key), slotId), passphrase);
      } catch (err) {
        if ((err as { code?: string }).code === 'STRATA_KEY_SLOT_INVALID') {
          damaged++;
          continue;
        }
        throw err;
      }
      if (keys) return new Pool(store, description, keys, slotId);
    }
    if (damaged === slots.length) throw new StrataError('STRATA_POOL_CORRUPT', `every key slot of pool ${store.location} is damaged; the pool cannot be opened`);
    throw new StrataError('STRATA_PASSPHRASE_WRONG', `the passphrase does not open pool ${store.location}; check "passphraseFile" in the config`);
  }

  blobId(data: Uint8Array): Buffer {
    return blobId(this.keys.idKey, data);
  }

  // --- key slots ---

  async addKeySlot(passphrase: string, now: number, scrypt?: ScryptParams): Promise<string> {
    validatePassphrase(passphrase);
    const slot = await createKeySlot(this.keys, passphrase, { now, host: hostname(), ...(scrypt ? { params: scrypt } : {}) });
    const id = newObjectId();
    await this.store.put(`${KEYS_PREFIX}${id}`, Buffer.from(JSON.stringify(slot, null, 2)));
    return id;
  }

  async removeKeySlot(id: string): Promise<void> {
    await this.store.delete(`${KEYS_PREFIX}${id}`);
  }

  async listKeySlots(): Promise<string[]> {
    return (await listAll(this.store, KEYS_PREFIX)).map((o) => o.key.slice(KEYS_PREFIX.length));
  }

  // --- index segments ---

  /** Seals and writes an index segment, to this pool's store or to another copy of the pool (the vault). */
  async writeIndex(segment: IndexSegment, options: { store?: ObjectStore; signal?: AbortSignal } = {}): Promise<string> {
    const id = newObjectId();
    await (options.store ?? this.store).put(`${INDEX_PREFIX}${id}`, seal(this.keys.encKey, encodeIndexSegment(segment), aad(INDEX_AAD, id)), options.signal ? { signal: options.signal } : {});
    return id;
  }

  decodeIndex(id: string, sealed: Buffer): IndexSegment {
    return decodeIndexSegment(...this.#openIndex(id, sealed));
  }

  /** An index segment's plaintext, and its name for messages. */
  #openIndex(id: string, sealed: Buffer): [Buffer, string] {
    const what = `index segment ${id.slice(0, 12)}`;
    return [open(this.keys.encKey, sealed, aad(INDEX_AAD, id), what), what];
  }

  async readIndex(id: string): Promise<IndexSegment> {
    return this.decodeIndex(id, await this.store.get(`${INDEX_PREFIX}${id}`));
  }

  /** An index segment with its packs' entries validated but not decoded (decodeIndexSegmentRaw). */
  async readIndexRaw(id: string): Promise<RawIndexSegment> {
    return decodeIndexSegmentRaw(...this.#openIndex(id, await this.store.get(`${INDEX_PREFIX}${id}`)));
  }

  async listIndexIds(): Promise<string[]> {
    return (await listAll(this.store, INDEX_PREFIX)).map((o) => o.key.slice(INDEX_PREFIX.length)).filter(isObjectId);
  }

  // --- manifests ---

  async writeManifest(manifest: Manifest): Promise<string> {
    const id = newObjectId();
    await this.store.put(`${SNAPSHOTS_PREFIX}${id}`, seal(this.keys.encKey, encodeManifest(manifest), aad(MANIFEST_AAD, id)));
    return id;
  }

  decodeManifest(id: string, sealed: Buffer): Manifest {
    const what = `recovery point ${id.slice(0, 12)}`;
    return decodeManifest(open(this.keys.encKey, sealed, aad(MANIFEST_AAD, id), what), what);
  }

  async readManifest(id: string): Promise<Manifest> {
    return this.decodeManifest(id, await this.store.get(`${SNAPSHOTS_PREFIX}${id}`));
  }

  async listManifestIds(): Promise<string[]> {
    return (await listAll(this.store, SNAPSHOTS_PREFIX)).map((o) => o.key.slice(SNAPSHOTS_PREFIX.length)).filter(isObjectId);
  }

  async deleteManifest(id: string): Promise<void> {
    await this.store.delete(`${SNAPSHOTS_PREFIX}${id}`);
  }
}

export function isObjectId(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

export { IntegrityError };
