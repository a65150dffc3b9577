// Files holding secrets (passphrase, vault credentials): created 0600, fsynced, replaced atomically.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { syncDir } from '../store/dir-store.js';

/** Writes a file holding a secret: mode 0600 from the start, fsynced, atomically replacing any old one. */
export async function writeSecretFile(file: string, content: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  const h = await fs.open(tmp, 'wx', 0o600);
  try {
    await h.writeFile(content);
    await h.sync();
  } finally {
    await h.close();
  }
  await fs.rename(tmp, file);
  await syncDir(path.dirname(file));
}
