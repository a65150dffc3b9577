import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RestoreTarget } from './restore-target.js';

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
