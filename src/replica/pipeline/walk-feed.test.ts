import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { entryAt, failedError, packListing } from './listing.js';
import { isWalkOf, startTreeWalk, type TreeWalk } from './walk-feed.js';
import { WorkerPool } from './worker-pool.js';
import { spareLister } from './workers.js';

let root: string;
const walks: TreeWalk[] = [];
beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'strata-walk-'));
});
afterEach(async () => {
  for (const w of walks.splice(0)) await w.close();
  rmSync(root, { recursive: true, force: true });
});

function walk(exclude: string[] = [], aheadEntries?: number): TreeWalk {
  const w = startTreeWalk(root, exclude, { inProcess: true, ...(aheadEntries ? { aheadEntries } : {}) });
  walks.push(w);
  return w;
}

/** Directories of `root` in the backup walk's order (pre-order, sorted names), with their entries. */
function reference(dir = root, rel = ''): { rel: string; names: string[] }[] {
  const names = readdirSync(dir).sort();
  const out = [{ rel, names }];
  for (const n of names) if (lstatSync(path.join(dir, n)).isDirectory()) out.push(...reference(path.join(dir, n), rel ? `${rel}/${n}` : n));
  return out;
}

function tree(dirs: number, filesPerDir: number): void {
  for (let d = 0; d < dirs; d++) {
    const dir = path.join(root, `d${d % 3}`, `sub${d}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < filesPerDir; f++) writeFileSync(path.join(dir, `f${f}.txt`), `file ${d}/${f}`);
  }
}

describe('packed listings', () => {
  it('carry each entry’s kind and lstat fields exactly, and why an lstat failed', () => {
    writeFileSync(path.join(root, 'a.txt'), 'hello');
    mkdirSync(path.join(root, 'sub'));
    symlinkSync('a.txt', path.join(root, 'link'));
    const names = ['a.txt', 'gone', 'link', 'sub'];
    const stats = names.map((n) => {
      try {
        return lstatSync(path.join(root, n), { bigint: true });
      } catch {
        return null;
      }
    });
    const errors = names.map((n, i) => (stats[i] ? null : Object.assign(new Error(`ENOENT: no such file, lstat '${n}'`), { code: 'ENOENT' })));
    const packed = packListing({ names, stats, errors, error: null });
    const a = entryAt(packed, 0)!;
    const st = stats[0]!;
    expect(a).toEqual({ kind: 'file', mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), size: 5n, nlink: st.nlink, dev: st.dev, ino: st.ino, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs });
    expect(entryAt(packed, 1)).toBeNull();
    expect((failedError(packed, 1) as NodeJS.ErrnoException).code).toBe('ENOENT');
    expect(entryAt(packed, 2)!.kind).toBe('symlink');
    expect(entryAt(packed, 3)!.kind).toBe('dir');
  });

  it('keep 64-bit device and inode numbers above 2^63 unsigned', () => {
    const st = lstatSync(root, { bigint: true });
    const big = Object.assign(Object.create(Object.getPrototypeOf(st) as object) as typeof st, st, { dev: 2n ** 64n - 3n, ino: 2n ** 63n + 5n });
    const packed = packListing({ names: ['x'], stats: [big], errors: [null], error: null });
    expect(entryAt(packed, 0)!.dev).toBe(2n ** 64n - 3n);
    expect(entryAt(packed, 0)!.ino).toBe(2n ** 63n + 5n);
  });
});

describe('a tree walk', () => {
  it('hands every directory’s listing over in the backup walk’s order, exclusions applied', async () => {
    tree(12, 4);
    mkdirSync(path.join(root, 'cache', 'deep'), { recursive: true });
    writeFileSync(path.join(root, 'cache', 'deep', 'x.tmp'), 'x');
    writeFileSync(path.join(root, 'top.tmp'), 'x');
    writeFileSync(path.join(root, 'top.txt'), 'x');
    const w = walk(['cache', '*.tmp']);
    const feed = await w.feed;
    const expected = reference().filter((d) => d.rel !== 'cache' && !d.rel.startsWith('cache/'));
    for (const d of expected) {
      const l = await feed.next(d.rel);
      expect(l.names).toEqual(d.names.filter((n) => n !== 'cache' && !n.endsWith('.tmp')));
    }
    await expect(feed.next('one-more')).rejects.toThrow(/ended before reaching "one-more"/);
  });

  it('runs on a spare lister started before the walk was known, with the walk’s own exclusions', async () => {
    tree(5, 3);
    writeFileSync(path.join(root, 'top.tmp'), 'x');
    const spare = spareLister();
    const w = startTreeWalk(root, ['*.tmp'], { spare });
    walks.push(w);
    expect(spare.available).toBe(false);
    const feed = await w.feed;
    for (const d of reference()) expect((await feed.next(d.rel)).names).toEqual(d.names.filter((n) => !n.endsWith('.tmp')));
    await expect(feed.next('one-more')).rejects.toThrow(/ended before/);
  });

  it('closes a spare it cannot use (not one lister) and lists on a thread of its own', async () => {
    tree(2, 2);
    const spare = WorkerPool.spare({ size: 2, load: () => import('./list-tasks.js') });
    const close = vi.spyOn(spare, 'close');
    const start = vi.spyOn(spare, 'start');
    const w = startTreeWalk(root, [], { spare });
    walks.push(w);
    expect(close).toHaveBeenCalledOnce();
    expect(start).not.toHaveBeenCalled();
    const feed = await w.feed;
    for (const d of reference()) expect((await feed.next(d.rel)).names).toEqual(d.names);
  });

  it('runs at most its bound ahead of the walk that takes its listings', async () => {
    tree(40, 10); // ~500 entries
    const ahead = 32;
    const feed = await walk([], ahead).feed;
    let maxQueued = 0;
    const dirs = reference();
    for (const d of dirs) {
      await new Promise((r) => setTimeout(r, 1)); // the lister gets every chance to run ahead
      maxQueued = Math.max(maxQueued, feed.queued);
      await feed.next(d.rel);
    }
    expect(maxQueued).toBeGreaterThan(0);
    expect(maxQueued).toBeLessThanOrEqual(ahead + Math.max(...dirs.map((d) => d.names.length + 1))); // the bound, plus the directory that crossed it
  });

  it('runs no further ahead than a narrowed bound once the listings already made are taken', async () => {
    tree(200, 10); // ~2,200 entries
    const feed = await walk([], 300).feed;
    feed.narrow(16);
    const dirs = reference();
    let maxLate = 0;
    for (const [i, d] of dirs.entries()) {
      await new Promise((r) => setTimeout(r, 0));
      if (i > dirs.length / 2) maxLate = Math.max(maxLate, feed.queued);
      await feed.next(d.rel);
    }
    expect(maxLate).toBeGreaterThan(0);
    const largestDir = Math.max(...dirs.map((d) => d.names.length + 1));
    expect(maxLate).toBeLessThanOrEqual(16 + largestDir); // the bound, plus the one directory that crossed it
  });

  it('says so when asked for a directory out of walk order', async () => {
    tree(3, 1);
    const feed = await walk().feed;
    await feed.next('');
    await expect(feed.next('d2')).rejects.toThrow(/out of step.*"d0" instead of "d2"/);
  });

  it('lists an unreadable directory as such, and goes on', async () => {
    tree(3, 1);
    const w = startTreeWalk(path.join(root, 'missing'), [], { inProcess: true });
    walks.push(w);
    const l = await (await w.feed).next('');
    expect(l.names).toEqual([]);
    expect(l.error?.code).toBe('ENOENT');
    expect(isWalkOf(w, path.join(root, 'missing'), [])).toBe(true);
    expect(isWalkOf(w, path.join(root, 'missing'), ['x'])).toBe(false);
    expect(isWalkOf(w, root, [])).toBe(false);
  });
});
