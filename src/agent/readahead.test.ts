import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readAhead } from './readahead.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'strata-readahead-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readAhead (a page-cache hint)', () => {
  it('reads a file through, whatever its size against the pieces and the cap, and leaves it as it was', async () => {
    for (const size of [0, 1, 1024 * 1024, 3 * 1024 * 1024 + 17]) {
      const file = path.join(dir, `f${size}`);
      const data = Buffer.alloc(size, 7);
      await writeFile(file, data);
      await expect(readAhead(file, 2 * 1024 * 1024)).resolves.toBeUndefined();
      await expect(readAhead(file, 256 * 1024 * 1024)).resolves.toBeUndefined();
      expect((await readFile(file)).equals(data)).toBe(true);
    }
  });

  it('never rejects: a missing file, a directory, an aborted signal', async () => {
    await expect(readAhead(path.join(dir, 'missing'), 1024)).resolves.toBeUndefined();
    await expect(readAhead(dir, 1024)).resolves.toBeUndefined();
    const file = path.join(dir, 'f');
    await writeFile(file, Buffer.alloc(4 * 1024 * 1024));
    await expect(readAhead(file, 1024 * 1024 * 1024, AbortSignal.abort())).resolves.toBeUndefined();
  });
});
