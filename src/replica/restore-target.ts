// Writes under a restore target without ever following a symlink out of it, even one swapped in by
// another process while the restore runs.
//
// Node has no openat(), so it is emulated on Linux: a directory is opened with O_DIRECTORY|O_NOFOLLOW
// and its descriptor held; the next component is reached as `/proc/self/fd/<dirfd>/<name>`. The kernel
// resolves `/proc/self/fd/<dirfd>` to the directory the descriptor holds (wherever it has been moved),
// never through the path it was opened by, so renaming a directory of the target and putting a symlink
// in its place changes nothing for us: `<name>` is looked up in the directory we created. The last
// component is never followed either: directories are opened O_NOFOLLOW, files are created O_EXCL,
// links and symlinks are created by link()/symlink() and renamed by rename() (none follows a symlink
// in the last component), and metadata is set through a descriptor opened O_NOFOLLOW, or with the l-
// variants for symlinks. Worker threads share the process's descriptors, so they may be handed such
// paths too, as long as the directory's descriptor stays open meanwhile (`acquire`/`release`).
//
// Descriptors are cached (most recently used kept, at most `maxOpen` unpinned ones) and all closed by
// `close()`. File contents are written into a private staging directory (0700, at the target's root)
// and renamed into place, so the many files written at once by the workers need one descriptor only.
import { constants, promises as fs, open as openCb, close as closeCb } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { StrataError } from '../errors.js';

const openFd = promisify(openCb) as (path: string, flags: number, mode?: number) => Promise<number>;
const closeFd = promisify(closeCb);

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/**
 * Creates a restore target directory (and its parents) if missing; a file in the way, or a place this
 * user cannot write, is a usage error that says so.
 */
export async function createTarget(target: string): Promise<void> {
  try {
    await fs.mkdir(target, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw new StrataError('STRATA_TARGET_NOT_DIR', `the restore target ${target} is not a directory (a file is in the way); give --target a directory, new or existing`, { kind: 'usage', cause: err });
    }
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new StrataError('STRATA_TARGET_DENIED', `cannot create the restore target ${target} (${code}); give --target a directory this user can write`, { kind: 'usage', cause: err });
    }
    throw err;
  }
}

/** The name of a restore's staging directory (at the target's root) starts with this. */
export const STAGING_PREFIX = '.strata-restore-';

/** Unpinned directory descriptors kept open (the rest are closed, least recently used first). */
const DEFAULT_MAX_OPEN = 256;

export interface TargetMeta {
  uid: number;
  gid: number;
  mode: number;
  mtimeNs: string;
  chown: boolean;
}

/** What a file created in the staging directory gets without being told (RestoreTarget.newFiles). */
export interface NewFiles {
  uid: number;
  gid: number;
  /** The umask its mode loses, or null when the mode does not come out as asked less the umask (a default ACL, say). */
  umask: number | null;
}

interface DirEntry {
  fd: number;
  pins: number;
  used: number;
}

/** The error of a restore that would have gone through something other than the directory it made. */
export function unsafe(shown: string, why: string, cause?: unknown): StrataError {
  return new StrataError('STRATA_RESTORE_UNSAFE', `${shown} ${why}; refusing to restore through it (nothing is written outside the target)`, {
    kind: 'failed',
    ...(cause ? { cause } : {}),
  });
}

/**
 * A stored time (ns since the epoch, decimal) as the seconds Node's utimes calls take. libuv keeps
 * microseconds of them, truncating: the microsecond plus half of one lands on it exactly, where the
 * microsecond alone came out 1 µs low about half the time (a double's rounding). Nanoseconds are lost:
 * Node has no call that sets them.
 */
export function utimeSeconds(mtimeNs: string): number {
  const micros = Number(BigInt(mtimeNs) / 1000n);
  return (micros >= 0 ? micros + 0.5 : micros) / 1e6;
}

export class RestoreTarget {
  /** The target's real path (for messages and read-only lookups). */
  readonly root: string;
  readonly #dirs = new Map<string, DirEntry>();
  readonly #maxOpen: number;
  #tick = 0;
  #staging: { name: string; fd: number } | null = null;
  #newFiles: NewFiles | null = null;
  #closed = false;

  private constructor(root: string, rootFd: number, maxOpen: number) {
    this.root = root;
    this.#maxOpen = maxOpen;
    this.#dirs.set('', { fd: rootFd, pins: 1, used: 0 }); // the root stays open to the end
  }

  /**
   * Creates the target if needed and opens it (the target itself may be reached through symlinks: the
   * user named it). Everything below is reached through its descriptor.
   */
  static async open(target: string, options: { maxOpen?: number } = {}): Promise<RestoreTarget> {
    await createTarget(target);
    const root = await fs.realpath(target);
    const fd = await openFd(root, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await fs.stat(`/proc/self/fd/${fd}/.`);
    } catch (err) {
      await closeFd(fd);
      throw new StrataError('STRATA_RESTORE_UNSAFE', `cannot reach /proc/self/fd (needed to restore without following symlinks): ${(err as Error).message}`, { kind: 'failed', cause: err });
    }
    return new RestoreTarget(root, fd, options.maxOpen ?? DEFAULT_MAX_OPEN);
  }

  /** The path (for messages) of `rel` under the target. */
  shown(rel: string): string {
    return rel ? path.join(this.root, ...rel.split('/')) : this.root;
  }

  /** `/proc/self/fd/<fd>/<name>`: `name` in the directory `fd` holds. */
  static at(fd: number, name: string): string {
    return `/proc/self/fd/${fd}/${name}`;
  }

  /**
   * The descriptor of the directory `rel`, pinned (open) until `release(rel)`. Each component is
   * opened O_NOFOLLOW from its parent's descriptor: a symlink or a non-directory anywhere is refused.
   */
  async acquire(rel: string): Promise<number> {
    return (await this.#pinned(rel)).fd;
  }

  /** Unpins what `acquire(rel)` pinned (a pinned directory stays in the cache, under its name). */
  release(rel: string): void {
    const e = this.#dirs.get(rel);
    if (!e) return;
    e.pins = Math.max(0, e.pins - 1);
    this.#evict();
  }

  /**
   * Runs `fn` with the descriptor of `rel`'s parent directory and `rel`'s last name. A system error it
   * throws names `rel`'s real path, not the `/proc/self/fd/…` path it was reached by.
   */
  async inParent<T>(rel: string, fn: (parentFd: number, name: string) => Promise<T>): Promise<T> {
    const slash = rel.lastIndexOf('/');
    const parent = slash < 0 ? '' : rel.slice(0, slash);
    const fd = await this.acquire(parent);
    const name = rel.slice(slash + 1);
    try {
      return await fn(fd, name);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const via = RestoreTarget.at(fd, name);
      if (typeof e.path === 'string' && e.path.startsWith(via)) {
        const shown = this.shown(rel) + e.path.slice(via.length);
        e.message = e.message.split(via).join(this.shown(rel));
        e.path = shown;
      }
      throw err;
    } finally {
      this.release(parent);
    }
  }

  /**
   * Creates the directory `rel` (mode 0700 until its metadata is set). If something is there already:
   * a real directory is used as it is; anything else (a symlink, a file) is refused, or with `replace`
   * (overwrite policy) removed first when it is not a directory.
   */
  async mkdir(rel: string, options: { replace?: boolean } = {}): Promise<void> {
    await this.inParent(rel, async (pfd, name) => {
      const p = RestoreTarget.at(pfd, name);
      try {
        await fs.mkdir(p, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const st = await fs.lstat(p);
        if (!st.isDirectory()) {
          if (!options.replace) throw unsafe(this.shown(rel), `is not a directory (${st.isSymbolicLink() ? 'a symlink' : 'a file'})`);
          await fs.unlink(p);
          await fs.mkdir(p, { mode: 0o700 });
        }
      }
    });
    // Opened (and cached) at once: it is the parent of what comes next.
    (await this.#pinned(rel)).pins--;
  }

  /** A private directory (0700) at the target's root for files being written; `stagingPath(n)` names its entries. */
  async staging(): Promise<void> {
    if (this.#staging) return;
    const name = `${STAGING_PREFIX}${randomBytes(8).toString('hex')}`;
    const rootFd = this.#dirs.get('')!.fd;
    await fs.mkdir(RestoreTarget.at(rootFd, name), { mode: 0o700 });
    const fd = await openFd(RestoreTarget.at(rootFd, name), DIR_FLAGS);
    this.#staging = { name, fd };
    this.#newFiles = await probeNewFiles(RestoreTarget.at(fd, 'probe'));
  }

  /**
   * The owner a file created in the staging directory gets, and whether its mode comes out as asked
   * less the umask (found with one probe file when the staging directory is made; null if that failed):
   * restore.ts skips the chown and chmod calls that would change nothing.
   */
  get newFiles(): NewFiles | null {
    return this.#newFiles;
  }

  stagingPath(n: number): string {
    if (!this.#staging) throw new Error('staging() first');
    return RestoreTarget.at(this.#staging.fd, String(n));
  }

  /**
   * Moves staged file `n` to `rel`'s place (replacing a file or symlink there, never following it).
   * Across filesystems (a mount point inside the target), the file is copied, with its metadata.
   */
  async moveIntoPlace(n: number, rel: string): Promise<void> {
    const from = this.stagingPath(n);
    await this.inParent(rel, async (pfd, name) => {
      const to = RestoreTarget.at(pfd, name);
      try {
        await fs.rename(from, to);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
        await this.#copyAcross(from, pfd, name);
      }
    });
  }

  async #copyAcross(from: string, pfd: number, name: string): Promise<void> {
    const tmp = RestoreTarget.at(pfd, `${STAGING_PREFIX}${randomBytes(6).toString('hex')}`);
    const src = await fs.open(from, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await src.stat({ bigint: true });
      // O_EXCL: never through a symlink; the copy gets the staged file's metadata, then its name.
      const dst = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        const buf = Buffer.allocUnsafe(1 << 20);
        for (let pos = 0; ; ) {
          const { bytesRead } = await src.read(buf, 0, buf.length, pos);
          if (bytesRead === 0) break;
          await dst.write(buf, 0, bytesRead, pos);
          pos += bytesRead;
        }
        if (process.getuid?.() === 0) await dst.chown(Number(st.uid), Number(st.gid)).catch(() => {});
        await dst.chmod(Number(st.mode & 0o7777n));
        const t = utimeSeconds(String(st.mtimeNs));
        await dst.utimes(t, t);
      } finally {
        await dst.close();
      }
      await fs.rename(tmp, RestoreTarget.at(pfd, name));
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    } finally {
      await src.close();
    }
    await fs.unlink(from);
  }

  /** Creates the symlink `rel` → `linkTarget` (with `replace`, a file or symlink there is removed first). */
  async symlink(linkTarget: string, rel: string, options: { replace?: boolean } = {}): Promise<void> {
    await this.inParent(rel, async (pfd, name) => {
      const p = RestoreTarget.at(pfd, name);
      if (options.replace) await this.#removeNonDir(p, rel);
      await fs.symlink(linkTarget, p);
    });
  }

  /** Creates `rel` as a hard link to `existingRel` (a file restored before); `replace` as for symlink. */
  async link(existingRel: string, rel: string, options: { replace?: boolean } = {}): Promise<void> {
    await this.inParent(existingRel, async (efd, ename) => {
      await this.inParent(rel, async (pfd, name) => {
        const p = RestoreTarget.at(pfd, name);
        if (options.replace) await this.#removeNonDir(p, rel);
        // link() does not follow a symlink in its first argument (no AT_SYMLINK_FOLLOW).
        await fs.link(RestoreTarget.at(efd, ename), p);
      });
    });
  }

  async #removeNonDir(p: string, rel: string): Promise<void> {
    const st = await fs.lstat(p).catch(() => null);
    if (!st) return;
    if (st.isDirectory()) throw unsafe(this.shown(rel), 'is a directory');
    await fs.unlink(p);
  }

  /** Sets a symlink's owner and times (lchown, lutimes: never its target's). */
  async symlinkMeta(rel: string, meta: TargetMeta): Promise<string | null> {
    return this.inParent(rel, async (pfd, name) => {
      const p = RestoreTarget.at(pfd, name);
      try {
        const t = utimeSeconds(meta.mtimeNs);
        if (meta.chown) await fs.lchown(p, meta.uid, meta.gid);
        await fs.lutimes(p, t, t);
        return null;
      } catch (err) {
        return `${this.shown(rel)}: could not restore metadata: ${(err as Error).message}`;
      }
    });
  }

  /** Closes every descriptor; removes the staging directory (with whatever a failed restore left in it). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const rootFd = this.#dirs.get('')!.fd;
    if (this.#staging) {
      await closeFd(this.#staging.fd).catch(() => {});
      // fs.rm does not follow symlinks: if the name was swapped, only the symlink goes.
      await fs.rm(RestoreTarget.at(rootFd, this.#staging.name), { recursive: true, force: true }).catch(() => {});
      this.#staging = null;
    }
    const fds = [...this.#dirs.values()].map((e) => e.fd);
    this.#dirs.clear();
    await Promise.all(fds.map((fd) => closeFd(fd).catch(() => {})));
  }

  /** Open directories now (for tests: the cache stays bounded). */
  get openDirectories(): number {
    return this.#dirs.size;
  }

  /**
   * The cache entry of the directory `rel`, opened through its parent's if not cached, and pinned: the
   * caller unpins it (`pins--`). It is pinned in the same synchronous step that finds or makes it, never
   * after an await: an entry left unpinned across one could be evicted meanwhile, its descriptor closed
   * and its number given to the next file or directory opened, and the caller would then work in that
   * one. (It happened: restoring 11k directories, 32 made at once, a directory several calls waited for
   * was evicted while the later ones closed their duplicate descriptors, and they went on through its
   * number: STRATA_RESTORE_UNSAFE "disappeared while the restore ran", or worse, a wrong directory.)
   */
  async #pinned(rel: string): Promise<DirEntry> {
    if (this.#closed) throw new Error('the restore target is closed');
    const hit = this.#dirs.get(rel);
    if (hit) {
      hit.used = ++this.#tick;
      hit.pins++;
      return hit;
    }
    const slash = rel.lastIndexOf('/');
    const parentRel = slash < 0 ? '' : rel.slice(0, slash);
    const parent = await this.#pinned(parentRel); // not evicted while its child is opened through it
    let fd: number;
    try {
      fd = await openFd(RestoreTarget.at(parent.fd, rel.slice(slash + 1)), DIR_FLAGS);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOTDIR') throw unsafe(this.shown(rel), 'is not a directory (a symlink?)', err);
      if (code === 'ENOENT') throw unsafe(this.shown(rel), 'disappeared while the restore ran (moved by another process?)', err);
      throw err;
    } finally {
      parent.pins--;
    }
    if (this.#closed) {
      closeCb(fd, () => {});
      throw new Error('the restore target is closed');
    }
    const raced = this.#dirs.get(rel); // opened meanwhile by a concurrent call: that one is kept
    if (raced) {
      raced.used = ++this.#tick;
      raced.pins++;
      closeCb(fd, () => {});
      return raced;
    }
    const e = { fd, pins: 1, used: ++this.#tick };
    this.#dirs.set(rel, e);
    this.#evict();
    return e;
  }

  /**
   * Past `maxOpen` unpinned descriptors, closes the least recently used down to three quarters of it
   * (in one go: sorting them for every directory opened took ~0.2 s of a 2.8k-directory restore).
   */
  #evict(): void {
    if (this.#dirs.size <= this.#maxOpen) return;
    let unpinned = 0;
    for (const e of this.#dirs.values()) if (e.pins === 0) unpinned++;
    if (unpinned <= this.#maxOpen) return;
    const keep = Math.floor((this.#maxOpen * 3) / 4);
    const victims = [...this.#dirs.entries()].filter(([, e]) => e.pins === 0).sort((a, b) => a[1].used - b[1].used);
    for (const [rel, e] of victims.slice(0, unpinned - keep)) {
      this.#dirs.delete(rel);
      closeCb(e.fd, () => {});
    }
  }
}

/** Creates `probe` (mode 0777), reads what it got, removes it. */
async function probeNewFiles(probe: string): Promise<NewFiles | null> {
  const umask = process.umask();
  try {
    const h = await fs.open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o777);
    let st;
    try {
      st = await h.stat();
    } finally {
      await h.close();
      await fs.unlink(probe);
    }
    return { uid: st.uid, gid: st.gid, umask: (st.mode & 0o7777) === (0o777 & ~umask) ? umask : null };
  } catch {
    return null; // every call is made then
  }
}
