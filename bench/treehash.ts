// A fast, order-independent-of-the-filesystem hash of a directory tree: every entry by relative path
// (sorted), its type, and for a regular file its size and a content hash (BLAKE3 over 4 MiB pieces),
// for a symlink its target. Used to prove that a restore gave back exactly the corpus, and by the
// corpus tests to prove determinism.
import { createHash } from 'node:crypto';
import { open, readdir, readlink, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { createRequire } from 'node:module';

type HashFn = (b: Buffer) => Buffer;
const hashPiece: HashFn = (() => {
  try {
    const req = createRequire(import.meta.url);
    const m = req('@napi-rs/blake-hash') as { blake3: HashFn };
    return m.blake3;
  } catch {
    return (b: Buffer) => createHash('sha256').update(b).digest();
  }
})();

export interface TreeEntry {
  rel: string;
  type: 'file' | 'dir' | 'symlink';
  size: number;
}

export interface TreeHash {
  hash: string;
  files: number;
  dirs: number;
  bytes: number;
}

/** All entries under `root`, depth first, sorted by name (byte order) at each level; root itself excluded. */
export async function walkTree(root: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  async function walk(dir: string, prefix: string): Promise<void> {
    const names = (await readdir(dir)).sort(byteOrder);
    for (const name of names) {
      const abs = join(dir, name);
      const rel = prefix ? `${prefix}/${name}` : name;
      const st = await lstat(abs);
      if (st.isDirectory()) {
        out.push({ rel, type: 'dir', size: 0 });
        await walk(abs, rel);
      } else if (st.isSymbolicLink()) {
        out.push({ rel, type: 'symlink', size: 0 });
      } else if (st.isFile()) {
        out.push({ rel, type: 'file', size: st.size });
      }
    }
  }
  await walk(root, '');
  return out;
}

export function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const PIECE = 4 << 20;

/** Content hash of one file: BLAKE3 of each 4 MiB piece, then of the list of piece hashes. */
export async function hashFile(path: string, buf: Buffer = Buffer.allocUnsafe(PIECE)): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const parts: Buffer[] = [];
    for (;;) {
      let n = 0;
      while (n < buf.length) {
        const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      if (n === 0 && parts.length > 0) break;
      parts.push(hashPiece(buf.subarray(0, n)));
      if (n < buf.length) break;
    }
    return hashPiece(Buffer.concat(parts)).toString('hex');
  } finally {
    await fh.close();
  }
}

export async function hashTree(root: string, concurrency = 4): Promise<TreeHash> {
  const entries = await walkTree(root);
  const lines: string[] = new Array(entries.length);
  let next = 0;
  let files = 0;
  let dirs = 0;
  let bytes = 0;
  async function worker(): Promise<void> {
    const buf = Buffer.allocUnsafe(PIECE);
    for (;;) {
      const i = next++;
      if (i >= entries.length) return;
      const e = entries[i] as TreeEntry;
      const abs = join(root, e.rel);
      if (e.type === 'file') {
        lines[i] = `F\0${e.rel}\0${e.size}\0${await hashFile(abs, buf)}\n`;
        files++;
        bytes += e.size;
      } else if (e.type === 'dir') {
        lines[i] = `D\0${e.rel}\n`;
        dirs++;
      } else {
        lines[i] = `L\0${e.rel}\0${await readlink(abs)}\n`;
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  const h = createHash('sha256');
  for (const l of lines) h.update(l);
  return { hash: h.digest('hex'), files, dirs, bytes };
}
