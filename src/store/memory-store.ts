// An in-memory object store: the default fake in tests.
import { NotFoundError, throwIfAborted } from '../errors.js';
import { assertValidKey, type ByteRange, type ObjectInfo, type ObjectStore, type StoreOptions } from './object-store.js';

export class MemoryStore implements ObjectStore {
  readonly capabilities = { connections: 8, atomicReplace: true };
  readonly location = 'memory:';
  #objects = new Map<string, Buffer>();

  async put(key: string, data: Uint8Array, options?: StoreOptions): Promise<void> {
    throwIfAborted(options?.signal);
    assertValidKey(key);
    this.#objects.set(key, Buffer.from(data));
  }

  async get(key: string, options?: StoreOptions & { range?: ByteRange }): Promise<Buffer> {
    throwIfAborted(options?.signal);
    const data = this.#objects.get(key);
    if (!data) throw new NotFoundError(key);
    const range = options?.range;
    if (!range) return Buffer.from(data);
    if (range.offset < 0 || range.length < 0 || range.offset + range.length > data.length) {
      throw new RangeError(`range ${range.offset}+${range.length} outside ${key} (${data.length} bytes)`);
    }
    return Buffer.from(data.subarray(range.offset, range.offset + range.length));
  }

  async stat(key: string, options?: StoreOptions): Promise<ObjectInfo> {
    throwIfAborted(options?.signal);
    const data = this.#objects.get(key);
    if (!data) throw new NotFoundError(key);
    return { key, size: data.length };
  }

  async *list(prefix: string, options?: StoreOptions): AsyncIterable<ObjectInfo> {
    for (const [key, data] of [...this.#objects]) {
      throwIfAborted(options?.signal);
      if (key.startsWith(prefix)) yield { key, size: data.length };
    }
  }

  async delete(key: string, options?: StoreOptions): Promise<void> {
    throwIfAborted(options?.signal);
    this.#objects.delete(key);
  }

  /** Test hook: the stored bytes, mutable in place (for corruption tests). */
  raw(key: string): Buffer | undefined {
    return this.#objects.get(key);
  }
}
