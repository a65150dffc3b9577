// Declarative file trees for tests: { "a": { "b.txt": "hello" }, "big": bytes(1, 3_000_000) }.
import { createCipheriv, createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

export type TreeSpec = { [name: string]: string | Buffer | TreeSpec | { symlink: string } | { hardlink: string } };

/** Deterministic pseudo-random bytes from a seed (AES-128-CTR keystream). */
export function bytes(seed: number, n: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed >>> 0);
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

/** Compressible text of about n bytes from a seed. */
export function text(seed: number, n: number): Buffer {
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
  const r = bytes(seed, Math.ceil(n / 4) + 16);
  const out: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const line = `2026-11-25T01:${String(i % 60).padStart(2, '0')}:00Z level=info ${words[r[i % r.length]! % 10]} id=${r.readUInt16LE(i % (r.length - 2))}\n`;
    out.push(line);
    len += line.length;
  }
  return Buffer.from(out.join('').slice(0, n));
}

export async function writeTree(root: string, spec: TreeSpec): Promise<void> {
  await fs.mkdir(root, { recursive: true });
  const links: [string, string][] = [];
  for (const [name, value] of Object.entries(spec)) {
    const p = path.join(root, name);
    if (typeof value === 'string' || Buffer.isBuffer(value)) await fs.writeFile(p, value);
    else if ('symlink' in value && typeof value.symlink === 'string') await fs.symlink(value.symlink, p);
    else if ('hardlink' in value && typeof value.hardlink === 'string') links.push([path.join(root, value.hardlink), p]);
    else await writeTree(p, value as TreeSpec);
  }
  for (const [existing, p] of links) await fs.link(existing, p);
}

export interface TreeEntryDigest {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs?: number;
  size?: number;
  sha256?: string;
  target?: string;
  ino?: number;
}

/** Every entry below root, with metadata and a content hash; hard links share an ino key (renumbered). */
export async function digestTree(root: string, options: { mtimes?: boolean } = {}): Promise<Record<string, TreeEntryDigest>> {
  const out: Record<string, TreeEntryDigest> = {};
  const inodes = new Map<number, number>();
  const walk = async (dir: string, rel: string) => {
    for (const name of (await fs.readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await fs.lstat(p);
      const d: TreeEntryDigest = { type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (options.mtimes !== false) d.mtimeMs = Math.floor(st.mtimeMs);
      if (st.isFile()) {
        d.size = st.size;
        d.sha256 = createHash('sha256').update(await fs.readFile(p)).digest('hex');
        if (st.nlink > 1) {
          if (!inodes.has(st.ino)) inodes.set(st.ino, inodes.size + 1);
          d.ino = inodes.get(st.ino)!;
        }
      }
      if (st.isSymbolicLink()) {
        d.target = await fs.readlink(p);
        delete d.mtimeMs; // symlink mtimes are restored with lutimes, but compare only when supported
      }
      out[r] = d;
      if (st.isDirectory()) await walk(p, r);
    }
  };
  await walk(root, '');
  return out;
}
