// A read-through wrapper that brings every object (or byte range) it is asked for into a local
// folder first, then serves it from there: how a restore from the vault goes through the recovery
// folder in the scratch area. Read-only; the caller removes the folder when done.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ByteRange, ObjectInfo, ObjectStore, StoreOptions } from './object-store.js';

export class RecoveryFolderStore implements ObjectStore {
  readonly capabilities: ObjectStore['capabilities'];
  readonly location: string;
  readonly #inner: ObjectStore;
  readonly #folder: string;
  /** Bytes brought into the folder so far. */
  bytesFetched = 0;
  objectsFetched = 0;

  constructor(inner: ObjectStore, folder: string) {
    this.#inner = inner;
    this.#folder = folder;
    this.capabilities = { ...inner.capabilities, atomicReplace: false };
    this.location = `${inner.location} via ${folder}`;
  }

  async get(key: string, options?: StoreOptions & { range?: ByteRange }): Promise<Buffer> {
    const data = await this.#inner.get(key, options);
    const file = path.join(this.#folder, `${key.replaceAll('/', '_')}.${options?.range ? `${options.range.offset}-${options.range.length}` : 'all'}.${randomBytes(3).toString('hex')}`);
    await fs.mkdir(this.#folder, { recursive: true, mode: 0o700 });
    await fs.writeFile(file, data, { mode: 0o600 });
    this.bytesFetched += data.length;
    this.objectsFetched++;
    try {
      return await fs.readFile(file);
    } finally {
      await fs.rm(file, { force: true });
    }
  }

  stat(key: string, options?: StoreOptions): Promise<ObjectInfo> {
    return this.#inner.stat(key, options);
  }

  list(prefix: string, options?: StoreOptions): AsyncIterable<ObjectInfo> {
    return this.#inner.list(prefix, options);
  }

  async put(): Promise<void> {
    throw new Error('the recovery folder is read-only');
  }

  async delete(): Promise<void> {
    throw new Error('the recovery folder is read-only');
  }
}
