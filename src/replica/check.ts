// check: every manifest → tree → blob resolves to a pack that exists with the indexed size; with
// readData, every pack is read, its header matched against the index, and every blob decrypted,
// authenticated and its id recomputed. Damage is reported per pack with the files it affects.
import type { BlobLocation } from '../catalog/catalog.js';
import { throwIfAborted } from '../errors.js';
import { listAll } from '../store/object-store.js';
import { BlobReader } from './blob-reader.js';
import type { IndexedPack } from './index-segment.js';
import { readPackHeader, type PackEntry } from './pack.js';
import { PACKS_PREFIX, packKey, type Pool } from './pool.js';

export interface CheckProblem {
  /** pack | index | manifest | tree | blob */
  kind: string;
  object: string;
  problem: string;
  /** "recovery point id: path" of files affected (at most 20 listed, see `affectedCount`). */
  affected: string[];
  affectedCount: number;
}

export interface CheckReport {
  ok: boolean;
  recoveryPoints: number;
  packs: number;
  blobs: number;
  bytesRead: number;
  problems: CheckProblem[];
  /** Not errors: packs no index names (an interrupted backup); prune removes them. */
  unreferencedPacks: string[];
}

export interface CheckOptions {
  readData?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: { phase: string; done: number; total: number; bytes: number }) => void;
}

const MAX_AFFECTED = 20;

export async function checkPool(pool: Pool, options: CheckOptions = {}): Promise<CheckReport> {
  const signal = options.signal;
  const report: CheckReport = { ok: true, recoveryPoints: 0, packs: 0, blobs: 0, bytesRead: 0, problems: [], unreferencedPacks: [] };
  const problemFor = new Map<string, CheckProblem>();
  const addProblem = (kind: string, object: string, problem: string): CheckProblem => {
    const key = `${kind}:${object}`;
    let p = problemFor.get(key);
    if (!p) {
      p = { kind, object, problem, affected: [], affectedCount: 0 };
      problemFor.set(key, p);
      report.problems.push(p);
    }
    return p;
  };

  // 1. The index, from the pool itself (never the catalog).
  const segments = new Map<string, IndexedPack[]>();
  const superseded = new Set<string>();
  for (const id of await pool.listIndexIds()) {
    try {
      const seg = await pool.readIndex(id);
      segments.set(id, seg.packs);
      for (const s of seg.supersedes) superseded.add(s.toString('hex'));
    } catch (err) {
      addProblem('index', `index/${id}`, (err as Error).message);
    }
  }
  const blobs = new Map<string, BlobLocation>();
  const packs = new Map<string, IndexedPack>();
  for (const [id, segPacks] of segments) {
    if (superseded.has(id)) continue;
    for (const p of segPacks) {
      const packId = p.id.toString('hex');
      packs.set(packId, p);
      for (const e of p.entries) {
        blobs.set(e.id.toString('hex'), { id: e.id, type: e.type, packId, offset: e.offset, length: e.length, rawLength: e.rawLength, compression: e.compression });
      }
    }
  }
  report.packs = packs.size;
  report.blobs = blobs.size;

  // 2. Packs present with the indexed size.
  const present = new Map((await listAll(pool.store, PACKS_PREFIX)).map((o) => [o.key.split('/').pop()!, o.size]));
  const badPacks = new Set<string>();
  /** Blobs that failed verification inside a pack whose header is sound. */
  const badBlobs = new Set<string>();
  const isBad = (blobIdHex: string, packId: string) => badPacks.has(packId) || badBlobs.has(blobIdHex);
  for (const [packId, p] of packs) {
    const size = present.get(packId);
    if (size === undefined) {
      addProblem('pack', packId, 'missing');
      badPacks.add(packId);
    } else if (size !== p.size) {
      addProblem('pack', packId, `size ${size}, the index says ${p.size} (truncated or replaced)`);
      badPacks.add(packId);
    }
  }
  for (const packId of present.keys()) if (!packs.has(packId)) report.unreferencedPacks.push(packId);

  // 3. With --read-data: every pack read whole and verified.
  if (options.readData) {
    const reader = new BlobReader(pool.store, pool.keys, () => undefined);
    let done = 0;
    for (const [packId, p] of packs) {
      throwIfAborted(signal);
      options.onProgress?.({ phase: 'reading packs', done, total: packs.size, bytes: report.bytesRead });
      done++;
      if (badPacks.has(packId)) continue;
      let data: Buffer;
      try {
        data = await pool.store.get(packKey(packId), signal ? { signal } : {});
      } catch (err) {
        addProblem('pack', packId, `cannot be read: ${(err as Error).message}`);
        badPacks.add(packId);
        continue;
      }
      report.bytesRead += data.length;
      const problem = verifyPack(pool, reader, packId, data, p.entries);
      if (problem.whole) {
        addProblem('pack', packId, problem.whole);
        badPacks.add(packId);
      } else if (problem.blobs.length > 0) {
        addProblem('pack', packId, `${problem.blobs.length} damaged blob(s): ${problem.blobs[0]!.message}`);
        for (const b of problem.blobs) badBlobs.add(b.id);
      }
    }
  }

  // 4. Every recovery point's trees and blobs resolve; damage is mapped to the files it affects.
  const reader = new BlobReader(pool.store, pool.keys, (id) => blobs.get(id.toString('hex')));
  const manifestIds = await pool.listManifestIds();
  report.recoveryPoints = manifestIds.length;
  const note = (p: CheckProblem, where: string) => {
    p.affectedCount++;
    if (p.affected.length < MAX_AFFECTED) p.affected.push(where);
  };
  let mDone = 0;
  for (const mid of manifestIds) {
    throwIfAborted(signal);
    options.onProgress?.({ phase: 'checking recovery points', done: mDone++, total: manifestIds.length, bytes: report.bytesRead });
    let tree: string;
    try {
      tree = (await pool.readManifest(mid)).tree;
    } catch (err) {
      addProblem('manifest', `snapshots/${mid}`, (err as Error).message);
      continue;
    }
    const rp = mid.slice(0, 12);
    const walk = async (treeId: string, prefix: string): Promise<void> => {
      const loc = blobs.get(treeId);
      if (!loc) {
        note(addProblem('tree', treeId, 'not in any index'), `${rp}: ${prefix || '/'} (whole directory)`);
        return;
      }
      if (isBad(treeId, loc.packId)) {
        note(addProblem('pack', loc.packId, 'damaged'), `${rp}: ${prefix || '/'} (whole directory)`);
        return;
      }
      let nodes;
      try {
        nodes = (await reader.tree(treeId, signal)).nodes;
      } catch (err) {
        const p = addProblem('pack', loc.packId, `tree ${treeId.slice(0, 16)}: ${(err as Error).message}`);
        badPacks.add(loc.packId);
        note(p, `${rp}: ${prefix || '/'} (whole directory)`);
        return;
      }
      for (const n of nodes) {
        const rel = prefix ? `${prefix}/${n.name}` : n.name;
        if (n.type === 'dir') await walk(n.subtree!, rel);
        else if (n.type === 'file') {
          for (const c of n.content ?? []) {
            const b = blobs.get(c);
            if (!b) {
              note(addProblem('blob', c, 'not in any index'), `${rp}: ${rel}`);
              break;
            }
            if (isBad(c, b.packId)) {
              note(addProblem('pack', b.packId, 'damaged'), `${rp}: ${rel}`);
              break;
            }
          }
        }
      }
    };
    await walk(tree, '');
  }
  report.ok = report.problems.length === 0;
  return report;
}

/**
 * Verifies a pack read whole: `whole` is set when the pack cannot be trusted at all (header damaged
 * or not matching the index); otherwise `blobs` lists each blob that fails (the others are sound).
 */
function verifyPack(pool: Pool, reader: BlobReader, packId: string, data: Buffer, indexed: PackEntry[]): { whole: string | null; blobs: { id: string; message: string }[] } {
  let entries: PackEntry[];
  try {
    entries = readPackHeader(pool.keys.encKey, Buffer.from(packId, 'hex'), data, `pack ${packId.slice(0, 12)}`);
  } catch (err) {
    return { whole: (err as Error).message, blobs: [] };
  }
  if (entries.length !== indexed.length || entries.some((e, i) => !e.id.equals(indexed[i]!.id) || e.offset !== indexed[i]!.offset || e.length !== indexed[i]!.length)) {
    return { whole: 'its header does not match the index', blobs: [] };
  }
  const blobs: { id: string; message: string }[] = [];
  for (const e of entries) {
    try {
      reader.decode({ id: e.id, type: e.type, packId, offset: e.offset, length: e.length, rawLength: e.rawLength, compression: e.compression }, data.subarray(e.offset, e.offset + e.length));
    } catch (err) {
      blobs.push({ id: e.id.toString('hex'), message: (err as Error).message });
    }
  }
  return { whole: null, blobs };
}
