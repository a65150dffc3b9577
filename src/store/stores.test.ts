import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { objectStoreConformance } from './conformance.js';
import { DirStore } from './dir-store.js';
import { MemoryStore } from './memory-store.js';

objectStoreConformance('memory', async () => ({ store: new MemoryStore() }));
objectStoreConformance('directory', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'strata-dirstore-'));
  return { store: new DirStore(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
});
