// Tree blobs: one per directory, entries sorted by name, encoded deterministically so an unchanged
// directory yields the same tree id and is stored once.
import { IntegrityError } from '../errors.js';

export type NodeType = 'file' | 'dir' | 'symlink';

export interface TreeNode {
  name: string;
  type: NodeType;
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in nanoseconds since the epoch, as a decimal string. */
  mtimeNs: string;
  /** file: content bytes. */
  size?: number;
  /** file: data blob ids (hex), in order. */
  content?: string[];
  /** file with several hard links: the path (relative to the recovery point's root) of the first link seen; all links of a file share it. */
  linkGroup?: string;
  /** dir: the subtree's blob id (hex). */
  subtree?: string;
  /** symlink: its target, as stored. */
  target?: string;
}

export interface Tree {
  nodes: TreeNode[];
}

const KEY_ORDER: (keyof TreeNode)[] = ['name', 'type', 'mode', 'uid', 'gid', 'mtimeNs', 'size', 'content', 'linkGroup', 'subtree', 'target'];

export function encodeTree(tree: Tree): Buffer {
  const nodes = [...tree.nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const ordered = nodes.map((n) => {
    const o: Record<string, unknown> = {};
    for (const k of KEY_ORDER) if (n[k] !== undefined) o[k] = n[k];
    return o;
  });
  return Buffer.from(JSON.stringify({ v: 1, nodes: ordered }));
}

/** A name that is safe to create under a directory: not empty, `.`, `..`, and without `/` or NUL. */
export function isSafeName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Parses and validates a tree blob: every name safe and unique, every field of the right type. */
export function decodeTree(buf: Buffer, what: string): Tree {
  let raw: { v?: unknown; nodes?: unknown };
  try {
    raw = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw new IntegrityError(`${what}: not a tree`, { cause: err });
  }
  if (raw.v !== 1 || !Array.isArray(raw.nodes)) throw new IntegrityError(`${what}: not a version 1 tree`);
  const seen = new Set<string>();
  const nodes = raw.nodes as TreeNode[];
  for (const n of nodes) {
    if (typeof n !== 'object' || n === null || typeof n.name !== 'string') throw new IntegrityError(`${what}: malformed entry`);
    if (!isSafeName(n.name)) {
      throw new IntegrityError(`${what}: entry name ${JSON.stringify(n.name)} could escape the restore target; refusing it`);
    }
    if (seen.has(n.name)) throw new IntegrityError(`${what}: duplicate entry ${JSON.stringify(n.name)}`);
    seen.add(n.name);
    const intOk = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
    if (!intOk(n.mode) || !intOk(n.uid) || !intOk(n.gid) || typeof n.mtimeNs !== 'string' || !/^-?\d+$/.test(n.mtimeNs)) {
      throw new IntegrityError(`${what}: entry ${JSON.stringify(n.name)} has malformed metadata`);
    }
    // Checked for every node, not only files: a decoded tree holds no path that could escape the target.
    if (n.linkGroup !== undefined && (typeof n.linkGroup !== 'string' || n.linkGroup.split('/').some((p) => !isSafeName(p)))) {
      throw new IntegrityError(`${what}: entry ${JSON.stringify(n.name)} has an unsafe link group`);
    }
    if (n.type === 'file') {
      if (!intOk(n.size) || !Array.isArray(n.content) || !n.content.every((c) => typeof c === 'string' && HEX64.test(c))) {
        throw new IntegrityError(`${what}: file ${JSON.stringify(n.name)} is malformed`);
      }
    } else if (n.type === 'dir') {
      if (typeof n.subtree !== 'string' || !HEX64.test(n.subtree)) throw new IntegrityError(`${what}: directory ${JSON.stringify(n.name)} is malformed`);
    } else if (n.type === 'symlink') {
      if (typeof n.target !== 'string' || n.target.includes('\0')) throw new IntegrityError(`${what}: symlink ${JSON.stringify(n.name)} is malformed`);
    } else {
      throw new IntegrityError(`${what}: entry ${JSON.stringify(n.name)} has unknown type`);
    }
  }
  return { nodes };
}
