// An object store over a local directory: the storage pool and the scratch area.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { crashPoint } from '../crash.js';
import { NotFoundError, isNotFound, throwIfAborted } from '../errors.js';
import { assertValidKey, type ByteRange, type ObjectInfo, type ObjectWriter, type StreamingObjectStore, type StoreOptions } from './object-store.js';

/** Temporary files carry this prefix; `cleanTemporaries` removes those left by a crash. */
export const TEMP_PREFIX = '.tmp-';

export class DirStore implements StreamingObjectStore {
  readonly capabilities = { connections: 4, atomicReplace: true };
  readonly root: string;
  /** When false, puts skip fsync (only for throwaway stores such as a restore's recovery folder). */
  readonly durable: boolean;

  constructor(root: string, options: { durable?: boolean } = {}) {
    this.root = path.resolve(root);
    this.durable = options.durable ?? true;
  }

  get location(): string {
    return this.root;
  }

  path(key: string): string {
    assertValidKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  /** Writes to a temporary name in the same directory, fsyncs it, renames it over the key, then fsyncs the directory. */
  async put(key: string, data: Uint8Array, options?: StoreOptions): Promise<void> {
    const writer = await this.openWriter(key, options);
    try {
      await writer.write(data);
    } catch (err) {
      await writer.abort();
      throw err;
    }
    await writer.commit();
  }

  /**
   * `put` in pieces: the bytes go to a temporary file in the key's directory as they are written;
   * `commit` fsyncs it, renames it over the key and fsyncs the directory (the same steps and crash
   * point as `put`), `abort` removes it.
   */
  async openWriter(key: string, options?: StoreOptions): Promise<ObjectWriter> {
    throwIfAborted(options?.signal);
    const final = this.path(key);
    const dir = path.dirname(final);
    await fs.mkdir(dir, { recursive: true });
    const tmp = path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const handle = await fs.open(tmp, 'wx', 0o600);
    return new DirObjectWriter(handle, tmp, final, dir, this.durable, options?.signal);
  }

  async get(key: string, options?: StoreOptions & { range?: ByteRange }): Promise<Buffer> {
    throwIfAborted(options?.signal);
    const file = this.path(key);
    const range = options?.range;
    try {
      if (!range) return await fs.readFile(file);
      const handle = await fs.open(file, 'r');
      try {
        const buf = Buffer.allocUnsafe(range.length);
        let done = 0;
        while (done < range.length) {
          const { bytesRead } = await handle.read(buf, done, range.length - done, range.offset + done);
          if (bytesRead === 0) throw new RangeError(`range ${range.offset}+${range.length} outside ${key}`);
          done += bytesRead;
        }
        return buf;
      } finally {
        await handle.close();
      }
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(key, { cause: err });
      throw err;
    }
  }

  async stat(key: string, options?: StoreOptions): Promise<ObjectInfo> {
    throwIfAborted(options?.signal);
    try {
      const st = await fs.stat(this.path(key));
      return { key, size: st.size };
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(key, { cause: err });
      throw err;
    }
  }

  async *list(prefix: string, options?: StoreOptions): AsyncIterable<ObjectInfo> {
    // Walk from the deepest directory the prefix names fully, then filter by the prefix.
    const slash = prefix.lastIndexOf('/');
    const base = slash >= 0 ? prefix.slice(0, slash) : '';
    const start = base ? path.join(this.root, ...base.split('/')) : this.root;
    const stack: { dir: string; rel: string }[] = [{ dir: start, rel: base }];
    while (stack.length > 0) {
      throwIfAborted(options?.signal);
      const { dir, rel } = stack.pop()!;
      let entries;
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      for (const entry of entries) {
        if (entry.name.startsWith(TEMP_PREFIX)) continue;
        const key = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          if (prefix.startsWith(key + '/') || key.startsWith(prefix) || prefix === key) stack.push({ dir: path.join(dir, entry.name), rel: key });
        } else if (entry.isFile() && key.startsWith(prefix)) {
          try {
            const st = await fs.stat(path.join(dir, entry.name));
            yield { key, size: st.size };
          } catch (err) {
            if (!isNotFound(err)) throw err;
          }
        }
      }
    }
  }

  async delete(key: string, options?: StoreOptions): Promise<void> {
    throwIfAborted(options?.signal);
    await fs.rm(this.path(key), { force: true });
  }

  /** Removes temporary files a crash left behind (older than `olderThanMs`), returning how many. */
  async cleanTemporaries(olderThanMs = 0, now = Date.now()): Promise<number> {
    let removed = 0;
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
      for (const entry of entries) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (entry.name.startsWith(TEMP_PREFIX)) {
          const st = await fs.stat(full).catch(() => null);
          if (st && now - st.mtimeMs >= olderThanMs) {
            await fs.rm(full, { force: true });
            removed++;
          }
        }
      }
    };
    await walk(this.root);
    return removed;
  }
}

class DirObjectWriter implements ObjectWriter {
  #handle: FileHandle | null;
  #position = 0;
  #pending = new Set<Promise<void>>();
  #error: unknown = null;
  #done = false;

  constructor(
    handle: FileHandle,
    readonly tmp: string,
    readonly final: string,
    readonly dir: string,
    readonly durable: boolean,
    readonly signal: AbortSignal | undefined,
  ) {
    this.#handle = handle;
  }

  /** Each write goes at its own offset, so writes issued together may run at once and still land in order. */
  write(data: Uint8Array): Promise<void> {
    if (this.#done) return Promise.reject(new Error(`writer for ${this.final} is closed`));
    if (this.#error) return Promise.reject(this.#error);
    const handle = this.#handle!;
    const at = this.#position;
    this.#position += data.length;
    const run = async (): Promise<void> => {
      throwIfAborted(this.signal);
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, at + done);
        done += bytesWritten;
      }
    };
    const p = run().catch((err: unknown) => {
      this.#error ??= err;
      throw err;
    });
    const tracked = p.then(
      () => {},
      () => {},
    );
    this.#pending.add(tracked);
    void tracked.then(() => this.#pending.delete(tracked));
    return p;
  }

  async commit(): Promise<void> {
    if (this.#done) throw new Error(`writer for ${this.final} is closed`);
    this.#done = true;
    const handle = this.#handle!;
    this.#handle = null;
    try {
      await Promise.all(this.#pending);
      if (this.#error) throw this.#error;
      if (this.durable) await handle.sync();
    } catch (err) {
      await handle.close().catch(() => {});
      await fs.rm(this.tmp, { force: true });
      throw err;
    }
    await handle.close();
    crashPoint('store-temp-written');
    try {
      throwIfAborted(this.signal);
      await fs.rename(this.tmp, this.final);
    } catch (err) {
      await fs.rm(this.tmp, { force: true });
      throw err;
    }
    if (this.durable) await syncDir(this.dir);
  }

  async abort(): Promise<void> {
    this.#done = true;
    const handle = this.#handle;
    this.#handle = null;
    if (!handle) return;
    await Promise.all(this.#pending);
    await handle.close().catch(() => {});
    await fs.rm(this.tmp, { force: true });
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
