// The object-store interface every copy of a pool is reached through: the local pool directory,
// the scratch area, an in-memory fake, and Azure Blob.

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
