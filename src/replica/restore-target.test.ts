import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RestoreTarget, STAGING_PREFIX } from './restore-target.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'strata-target-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('RestoreTarget.open', () => {
  it('refuses a target that is a file, or under one, with a usage error, and leaves the file as it was', async () => {
    const file = path.join(dir, 'file');
    await writeFile(file, 'keep me');
    for (const target of [file, path.join(file, 'below')]) {
      await expect(RestoreTarget.open(target)).rejects.toMatchObject({ code: 'STRATA_TARGET_NOT_DIR', kind: 'usage' });
    }
    expect(await readFile(file, 'utf8')).toBe('keep me');
  });

  it('creates a missing target', async () => {
    const rt = await RestoreTarget.open(path.join(dir, 'a', 'b'));
    expect(rt.root).toBe(path.join(dir, 'a', 'b'));
    await rt.close();
  });
});

describe('RestoreTarget staging', () => {
  it('knows what a new file gets: this process’s owner (or a set-group-id directory’s group) and its umask, and leaves no probe behind', async () => {
    const t = path.join(dir, 't');
    await mkdir(t);
    const root = process.getuid?.() === 0;
    if (root) {
      await chown(t, 0, 4321);
      await chmod(t, 0o2755); // a new directory under it inherits its group and the bit
    }
    const rt = await RestoreTarget.open(t);
    try {
      expect(rt.newFiles).toBeNull();
      await rt.staging();
      expect(rt.newFiles).toEqual({ uid: process.geteuid!(), gid: root ? 4321 : process.getegid!(), umask: process.umask() });
      const staging = (await readdir(t)).find((n) => n.startsWith(STAGING_PREFIX))!;
      expect(await readdir(path.join(t, staging))).toEqual([]);
    } finally {
      await rt.close();
    }
  });
});

describe('RestoreTarget errors', () => {
  it('name the real path under the target, not the /proc/self/fd path it was reached by', async () => {
    const rt = await RestoreTarget.open(path.join(dir, 't'));
    try {
      const name = 'n'.repeat(300); // longer than any file system allows: mkdir fails with ENAMETOOLONG
      const err = await rt.mkdir(name).then(
        () => null,
        (e: NodeJS.ErrnoException) => e,
      );
      expect(err).toMatchObject({ code: 'ENAMETOOLONG', path: path.join(rt.root, name) });
      expect(err!.message).toContain(path.join(rt.root, name));
      expect(err!.message).not.toContain('/proc/self/fd');
    } finally {
      await rt.close();
    }
  });
});

describe('RestoreTarget descriptor cache', () => {
  it('stays right under eviction: many directories made and written into at once through a cache of 4', async () => {
    // A tree 4 levels deep, 3-5 subdirectories each (255 directories), made level by level with 32
    // operations in flight as restore.ts does, while files are written through parents acquired in
    // parallel: every file must land in its own directory, and every descriptor must be the right one.
    const rt = await RestoreTarget.open(dir, { maxOpen: 4 });
    const levels: string[][] = [];
    let frontier = [''];
    for (let depth = 0; depth < 4; depth++) {
      const next: string[] = [];
      frontier.forEach((parent, i) => {
        for (let k = 0; k < 3 + ((i + depth) % 3); k++) next.push(parent ? `${parent}/d${k}` : `d${k}`);
      });
      levels.push(next);
      frontier = next;
    }
    const all = levels.flat();
    const { mapLimit } = await import('./pipeline/limit.js');
    const writes: Promise<void>[] = [];
    try {
      for (const level of levels) {
        await mapLimit(level, 32, async (rel) => {
          await rt.mkdir(rel);
          // A file in the parent, through the parent's descriptor, while other directories are made.
          writes.push(rt.inParent(`${rel}.txt`, async (fd, name) => writeFile(RestoreTarget.at(fd, name), rel)));
        });
      }
      await Promise.all(writes);
      // Acquired in a scattered order, many at once: each descriptor is its own directory.
      await mapLimit([...all].reverse(), 16, async (rel) => {
        const fd = await rt.acquire(rel);
        try {
          await writeFile(RestoreTarget.at(fd, 'here.txt'), rel);
        } finally {
          rt.release(rel);
        }
      });
      expect(rt.openDirectories).toBeLessThanOrEqual(4 + 1);
    } finally {
      await rt.close();
    }
    expect(all.length).toBeGreaterThan(200);
    for (const rel of all) {
      expect(await readFile(path.join(dir, `${rel}.txt`), 'utf8')).toBe(rel);
      expect(await readFile(path.join(dir, rel, 'here.txt'), 'utf8')).toBe(rel);
    }
  });
});
