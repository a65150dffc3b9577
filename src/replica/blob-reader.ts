// Reads blobs by id through any object store holding the pool's packs, given where each blob lives.
import type { BlobLocation } from '../catalog/catalog.js';
import { StrataError } from '../errors.js';
import type { ObjectStore } from '../store/object-store.js';
import { decodeBlob } from './blob-codec.js';
import type { Compression } from './pack.js';
import { packKey } from './pool.js';
import { decodeTree, type Tree } from './tree.js';

export type BlobLookup = (id: Buffer) => BlobLocation | undefined;

export class BlobReader {
  readonly store: ObjectStore;
  readonly keys: { encKey: Buffer; idKey: Buffer };
  readonly lookup: BlobLookup;
  #trees = new Map<string, Tree>();

  constructor(store: ObjectStore, keys: { encKey: Buffer; idKey: Buffer }, lookup: BlobLookup) {
    this.store = store;
    this.keys = keys;
    this.lookup = lookup;
  }

  locate(idHex: string): BlobLocation {
    const loc = this.lookup(Buffer.from(idHex, 'hex'));
    if (!loc) {
      throw new StrataError('STRATA_BLOB_MISSING', `blob ${idHex.slice(0, 16)} is not in the index; run 'strata check' (and 'strata repair' if the vault has a copy)`, {
        kind: 'failed',
      });
    }
    return loc;
  }

  /** Reads, authenticates, decompresses and verifies one blob. */
  async read(idHex: string, signal?: AbortSignal): Promise<Buffer> {
    const loc = this.locate(idHex);
    const sealed = await this.store.get(packKey(loc.packId), { range: { offset: loc.offset, length: loc.length }, ...(signal ? { signal } : {}) });
    return this.decode(loc, sealed);
  }

  decode(loc: BlobLocation, sealed: Buffer): Buffer {
    return decodeBlob(this.keys, { id: loc.id, compression: loc.compression as Compression, rawLength: loc.rawLength }, sealed, {
      verifyId: true,
      what: `blob ${loc.id.toString('hex').slice(0, 16)} in pack ${loc.packId.slice(0, 12)}`,
    });
  }

  async tree(idHex: string, signal?: AbortSignal): Promise<Tree> {
    const cached = this.#trees.get(idHex);
    if (cached) return cached;
    const tree = decodeTree(await this.read(idHex, signal), `tree ${idHex.slice(0, 16)}`);
    if (this.#trees.size > 10_000) this.#trees.clear();
    this.#trees.set(idHex, tree);
    return tree;
  }
}
