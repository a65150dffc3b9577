// The object-store interface every copy of a pool is reached through: the local pool directory,
// the scratch area, an in-memory fake, and Azure Blob.
import { throwIfAborted } from '../errors.js';

export interface ObjectInfo {
  key: string;
  size: number;
}

export interface ByteRange {
  offset: number;
  length: number;
}

export interface StoreCapabilities {
  /** How many operations the store serves well at once (the uploader and restore size their parallelism by it). */
  connections: number;
  /** True when a put over an existing key replaces it atomically. */
  atomicReplace: boolean;
}

export interface StoreOptions {
  signal?: AbortSignal;
}

/**
 * Keys are `/`-separated relative paths (`packs/ab/ab12…`), never starting with `/`, never containing
 * `.` or `..` segments.
 *
 * Contracts:
 * - `put` is atomic: a reader sees the whole object or none of it; after `put` resolves the object is
 *   durable and `get` sees it. Putting an existing key replaces it.
 * - `get` with a range returns exactly those bytes; a range past the end is an error.
 * - `list(prefix)` reports each object under the prefix once, in no particular order; objects written
 *   while listing may or may not appear.
 * - A missing object is a `NotFoundError` from `get` and `stat`; `delete` of a missing object succeeds.
 */
export interface ObjectStore {
  readonly capabilities: StoreCapabilities;
  /** A short human name for messages: a path or a URL without secrets. */
  readonly location: string;
  put(key: string, data: Uint8Array, options?: StoreOptions): Promise<void>;
  get(key: string, options?: StoreOptions & { range?: ByteRange }): Promise<Buffer>;
  stat(key: string, options?: StoreOptions): Promise<ObjectInfo>;
  list(prefix: string, options?: StoreOptions): AsyncIterable<ObjectInfo>;
  delete(key: string, options?: StoreOptions): Promise<void>;
}

/**
 * An object being written piece by piece (`openObjectWriter`): `write` appends, `commit` makes the
 * whole object visible and durable at once (as `put` would), `abort` drops it. Nothing is visible
 * under the key before `commit` resolves. A writer never keeps a buffer passed to `write` after that
 * write's promise settles, so the caller may reuse it then. Writes are applied in call order; one
 * failed write fails the writer (later writes and `commit` reject).
 */
export interface ObjectWriter {
  write(data: Uint8Array): Promise<void>;
  commit(): Promise<void>;
  /** Drops what was written (nothing appears under the key); safe to call after a failure or twice. */
  abort(): Promise<void>;
}

/** A store that writes objects incrementally (to a temporary file) instead of from one buffer. */
export interface StreamingObjectStore extends ObjectStore {
  openWriter(key: string, options?: StoreOptions): Promise<ObjectWriter>;
}

export function isStreamingStore(store: ObjectStore): store is StreamingObjectStore {
  return typeof (store as Partial<StreamingObjectStore>).openWriter === 'function';
}

/**
 * A writer for `key`: the store's own when it streams (the local pool: the object's bytes go to a
 * temporary file as they come, so no more than a write's worth is held in memory), otherwise one
 * that gathers copies of the pieces and `put`s them whole on commit (the same contract, the memory
 * of the whole object).
 */
export async function openObjectWriter(store: ObjectStore, key: string, options?: StoreOptions): Promise<ObjectWriter> {
  if (isStreamingStore(store)) return store.openWriter(key, options);
  assertValidKey(key);
  throwIfAborted(options?.signal);
  let parts: Buffer[] | null = [];
  let length = 0;
  return {
    write: async (data) => {
      if (!parts) throw new Error(`object writer for ${key} is closed`);
      parts.push(Buffer.from(data));
      length += data.length;
    },
    commit: async () => {
      if (!parts) throw new Error(`object writer for ${key} is closed`);
      const whole = Buffer.concat(parts, length);
      parts = null;
      await store.put(key, whole, options);
    },
    abort: async () => {
      parts = null;
    },
  };
}

/** Checks a key is a safe relative path; throws otherwise. */
export function assertValidKey(key: string): void {
  if (
    key.length === 0 ||
    key.startsWith('/') ||
    key.includes('\0') ||
    key.split('/').some((part) => part === '' || part === '.' || part === '..')
  ) {
    throw new Error(`invalid object key: ${JSON.stringify(key)}`);
  }
}

export async function listAll(store: ObjectStore, prefix: string, options?: StoreOptions): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of store.list(prefix, options)) out.push(info);
  return out;
}

export async function exists(store: ObjectStore, key: string, options?: StoreOptions): Promise<boolean> {
  try {
    await store.stat(key, options);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === 'STRATA_NOT_FOUND') return false;
    throw err;
  }
}
