// A restore never writes outside --target, even through symlinks: planted before the restore (a
// directory or a file of the restored tree already exists as a symlink to somewhere outside), under
// each --on-conflict policy; and swapped in while it runs (a racer renames directories the restore
// created and puts symlinks to an outside directory in their place). The restore writes through
// directory descriptors (src/replica/restore-target.ts), so a swap cannot divert it.
import { lstatSync, readdirSync, renameSync, symlinkSync } from 'node:fs';
import { lstat, mkdir, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { makeSandbox, spawnCli, type Sandbox } from '../helpers/cli.js';
import { digestTree, text, writeTree, type TreeSpec } from '../helpers/fs-tree.js';

let azurite: Azurite;
let sb: Sandbox;
let small: { id: string; digest: Awaited<ReturnType<typeof digestTree>> };
let wide: { id: string; files: number; dirs: number };

/** Every entry under `dir` (not following symlinks), as relative paths. */
async function listAll(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory()) await walk(path.join(d, e.name), r);
    }
  };
  await walk(dir, '');
  return out.sort();
}

beforeAll(async () => {
  azurite = await startAzurite();
  sb = await makeSandbox({}, { vault: azurite.endpoint });
  expect((await sb.strata(['init'])).code).toBe(0);
  const smallSrc = path.join(sb.dir, 'small');
  await writeTree(smallSrc, { dir: { 'inner.txt': 'restored inside dir', sub: { 'deep.txt': 'deeper' } }, 'file.txt': 'restored file', 'other.txt': 'untouched by conflicts' });
  small = { id: (await sb.json(['backup', '--path', smallSrc])).recoveryPoint.id, digest: await digestTree(smallSrc) };
  // Many directories (and files in each), so a restore takes long enough to race against.
  const spec: TreeSpec = {};
  let files = 0;
  let dirs = 0;
  for (let a = 0; a < 24; a++) {
    const top: TreeSpec = {};
    dirs++;
    for (let b = 0; b < 12; b++) {
      const d: TreeSpec = {};
      dirs++;
      for (let f = 0; f < 6; f++) {
        d[`f${f}.txt`] = text(a * 1000 + b * 10 + f, 2_000 + ((a * 31 + b * 7 + f) % 9) * 1_000);
        files++;
      }
      top[`d${b}`] = d;
    }
    spec[`t${a}`] = top;
  }
  const wideSrc = path.join(sb.dir, 'wide');
  await writeTree(wideSrc, spec);
  wide = { id: (await sb.json(['backup', '--path', wideSrc])).recoveryPoint.id, files, dirs };
}, 120_000);

afterAll(async () => {
  await sb?.cleanup();
  await azurite?.stop();
});

describe('symlinks planted in the target before the restore', () => {
  const policies = ['error', 'skip', 'copy', 'overwrite'] as const;
  it.each(policies)('--on-conflict %s: nothing is written outside, the outcome is the policy', async (policy) => {
    const base = path.join(sb.dir, `planted-${policy}`);
    const outsideDir = path.join(base, 'outside-dir');
    const outsideFile = path.join(base, 'outside-file.txt');
    const target = path.join(base, 'target');
    await mkdir(outsideDir, { recursive: true });
    await mkdir(target, { recursive: true });
    await writeFile(outsideFile, 'precious, outside the target');
    await symlink(outsideDir, path.join(target, 'dir'));
    await symlink(outsideFile, path.join(target, 'file.txt'));

    // The default policy (no --on-conflict) is "error".
    const r = await sb.strata(['restore', small.id, '--target', target, ...(policy === 'error' ? [] : ['--on-conflict', policy]), '--json']);
    // Whatever the policy: the outside is as it was.
    expect(await readdir(outsideDir)).toEqual([]);
    expect(await readFile(outsideFile, 'utf8')).toBe('precious, outside the target');

    const kind = async (rel: string) => {
      const st = await lstat(path.join(target, rel)).catch(() => null);
      return st === null ? 'none' : st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : 'file';
    };
    switch (policy) {
      case 'error':
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(/STRATA_RESTORE_CONFLICT/);
        expect(await listAll(target)).toEqual(['dir', 'file.txt']); // nothing written
        break;
      case 'skip': {
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout).skipped.sort()).toEqual(['dir', 'file.txt']);
        expect(await kind('dir')).toBe('symlink');
        expect(await kind('file.txt')).toBe('symlink');
        expect(await readFile(path.join(target, 'other.txt'), 'utf8')).toBe('untouched by conflicts');
        break;
      }
      case 'copy': {
        expect(r.code, r.stderr).toBe(0);
        expect(await kind('dir')).toBe('symlink');
        expect(await kind('file.txt')).toBe('symlink');
        expect(await readlink(path.join(target, 'dir'))).toBe(outsideDir);
        expect(await kind('dir.restored')).toBe('dir');
        expect(await readFile(path.join(target, 'dir.restored', 'inner.txt'), 'utf8')).toBe('restored inside dir');
        expect(await readFile(path.join(target, 'dir.restored', 'sub', 'deep.txt'), 'utf8')).toBe('deeper');
        expect(await readFile(path.join(target, 'file.txt.restored'), 'utf8')).toBe('restored file');
        break;
      }
      case 'overwrite': {
        // The symlinks themselves are replaced (never written through): the tree is restored exactly.
        expect(r.code, r.stderr).toBe(0);
        expect(await kind('dir')).toBe('dir');
        expect(await kind('file.txt')).toBe('file');
        expect(await digestTree(target)).toEqual(small.digest);
        break;
      }
    }
  });

  it('a symlink planted deeper (a directory inside a directory of the tree) is refused, with nothing written outside', async () => {
    const base = path.join(sb.dir, 'planted-deep');
    const outsideDir = path.join(base, 'outside-dir');
    const target = path.join(base, 'target');
    await mkdir(outsideDir, { recursive: true });
    await mkdir(path.join(target, 'dir'), { recursive: true });
    await symlink(outsideDir, path.join(target, 'dir', 'sub'));
    // "dir" is a real directory (merged into); "dir/sub" is a symlink where the tree has a directory.
    const r = await sb.strata(['restore', small.id, '--target', target, '--on-conflict', 'skip', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).skipped).toEqual(['dir/sub']);
    expect(await readdir(outsideDir)).toEqual([]);
    expect(await readFile(path.join(target, 'dir', 'inner.txt'), 'utf8')).toBe('restored inside dir');
  });
});

describe('directories swapped for symlinks while the restore runs', () => {
  // Bounded: at most 400 swaps and 30 s per run; three runs with the racer starting at different times.
  it.each([0, 1, 2])('run %i: the outside directory stays empty; the restore completes inside the target or fails clearly', async (run) => {
    const base = path.join(sb.dir, `race-${run}`);
    const outsideDir = path.join(base, 'outside');
    const target = path.join(base, 'target');
    await mkdir(outsideDir, { recursive: true });
    await mkdir(target, { recursive: true });
    const child = spawnCli(['restore', wide.id, '--target', target, '--json', '--config', sb.config]);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    let done = false;
    void exited.then(() => (done = true));

    // The racer: every directory the restore created (found by listing the target) is renamed and a
    // symlink to the outside directory put in its place, as fast as it can, until the restore ends.
    const started = Date.now();
    let swaps = 0;
    let k = 0;
    const swapped = new Set<string>();
    while (!done && swaps < 400 && Date.now() - started < 30_000) {
      const queue = [target];
      while (queue.length && swaps < 400) {
        const d = queue.shift()!;
        let names: string[];
        try {
          names = readdirSync(d);
        } catch {
          continue;
        }
        for (const name of names) {
          if (name.startsWith('.strata-restore-') || name.includes('.moved-')) continue;
          const p = path.join(d, name);
          let st;
          try {
            st = lstatSync(p);
          } catch {
            continue;
          }
          if (!st.isDirectory()) continue;
          if ((run + k++) % 3 === 0 && !swapped.has(p)) {
            try {
              renameSync(p, `${p}.moved-${swaps}`);
              symlinkSync(outsideDir, p);
              swapped.add(p);
              swaps++;
            } catch {
              /* raced with the restore itself: fine */
            }
          } else queue.push(p);
        }
      }
      await new Promise((r) => setImmediate(r));
    }
    const code = await exited;

    // Never written outside: the outside directory is empty.
    expect(await listAll(outsideDir), `swaps ${swaps}; restore exit ${code}: ${stderr}`).toEqual([]);
    expect(swaps, 'the racer swapped nothing: the restore was too quick to race').toBeGreaterThan(0);
    if (code === 0) {
      // Completed: every file is inside the target (under the moved directories where the racer moved them).
      const all = await listAll(target);
      const files = [];
      for (const rel of all) if ((await lstat(path.join(target, rel))).isFile()) files.push(rel);
      expect(files.length).toBe(wide.files);
      expect(JSON.parse(stdout).files).toBe(wide.files);
    } else {
      expect(code, stderr).toBe(1);
      expect(stderr).toMatch(/STRATA_RESTORE_UNSAFE/);
      expect(stderr).not.toMatch(/STRATA_INTERNAL/);
    }
    console.log(`restore race run ${run}: ${swaps} directories swapped for symlinks; restore ${code === 0 ? 'completed inside the target' : `failed: ${stderr.trim().split('\n')[0]}`}`);
    // Leaves no staging directory behind.
    expect(readdirSync(target).filter((n) => n.startsWith('.strata-restore-'))).toEqual([]);
    await rm(base, { recursive: true, force: true });
  }, 60_000);
});

describe('RestoreTarget (src/replica/restore-target.ts)', () => {
  it('keeps a bounded number of directory descriptors open, closes them all at the end, and refuses a symlink in the way', async () => {
    const { RestoreTarget } = await import('../../src/replica/restore-target.js');
    const base = path.join(sb.dir, 'rt-unit');
    const outside = path.join(base, 'outside');
    await mkdir(outside, { recursive: true });
    const fdsBefore = readdirSync('/proc/self/fd').length;
    const rt = await RestoreTarget.open(path.join(base, 'target'), { maxOpen: 4 });
    let peak = 0;
    for (let a = 0; a < 10; a++) {
      await rt.mkdir(`a${a}`);
      for (let b = 0; b < 5; b++) {
        await rt.mkdir(`a${a}/b${b}`);
        peak = Math.max(peak, rt.openDirectories);
      }
    }
    expect(peak).toBeLessThanOrEqual(4 + 1 + 1); // the cache, the root, and a parent pinned while its child opens
    // A directory whose name was swapped for a symlink: refused, never followed.
    renameSync(path.join(base, 'target', 'a0'), path.join(base, 'target', 'a0.moved'));
    symlinkSync(outside, path.join(base, 'target', 'a0'));
    await expect(rt.mkdir('a0/b9')).rejects.toMatchObject({ code: 'STRATA_RESTORE_UNSAFE' });
    await expect(rt.symlink('/etc/passwd', 'a0/link')).rejects.toMatchObject({ code: 'STRATA_RESTORE_UNSAFE' });
    await rt.close();
    expect(await readdir(outside)).toEqual([]);
    expect(readdirSync('/proc/self/fd').length).toBe(fdsBefore);
  });
});
