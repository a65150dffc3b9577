import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bytes, text } from '../../../test/helpers/fs-tree.js';
import { BlobIdSet } from '../../catalog/blob-id-set.js';
import { blobId, gearTable } from '../../crypto/hash.js';
import { MemoryStore } from '../../store/memory-store.js';
import type { ObjectStore } from '../../store/object-store.js';
import { decodeBlob } from '../blob-codec.js';
import { Chunker, chunkAll } from '../chunker.js';
import { readPackHeader } from '../pack.js';
import { Packer } from '../packer.js';
import { packKey } from '../pool.js';
import { BackupStage, type FileOutcome } from './backup-stage.js';
import { ByteBudget, createBudget } from './byte-budget.js';
import { startWorkers } from './workers.js';

const PARAMS = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
const keys = { encKey: randomBytes(32), idKey: randomBytes(32), chunkerKey: randomBytes(32) };
const gear = gearTable(keys.chunkerKey);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'strata-stage-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The ids a sequential read of `data` gives. */
function expectedIds(data: Buffer): string[] {
  const out: string[] = [];
  let pos = 0;
  for (const n of chunkAll(new Chunker(PARAMS, gear), data)) {
    out.push(blobId(keys.idKey, data.subarray(pos, pos + n)).toString('hex'));
    pos += n;
  }
  return out;
}

async function stage(options: { budgetBytes: number; workers?: number; known?: BlobIdSet; store?: ObjectStore; maxQueuedBytes?: number; maxQueuedFiles?: number }) {
  const count = options.workers ?? 2;
  const known = options.known ?? new BlobIdSet();
  const budgets = Array.from({ length: count }, () => createBudget(options.budgetBytes));
  const pool = await startWorkers(count, (i) => ({ ...keys, chunker: { params: PARAMS, gear }, budget: budgets[i]!, known: known.table() }));
  const store = options.store ?? new MemoryStore();
  const packer = new Packer(store, { encKey: keys.encKey, targetBytes: 256 * 1024 });
  const stats = { chunks: 0, fresh: 0 };
  const s = new BackupStage({
    pool,
    budgets: budgets.map((b) => new ByteBudget(b)),
    known,
    packer,
    smallFile: PARAMS.min,
    ...(options.maxQueuedBytes ? { maxQueuedBytes: options.maxQueuedBytes } : {}),
    ...(options.maxQueuedFiles ? { maxQueuedFiles: options.maxQueuedFiles } : {}),
    onChunk: (_raw, isNew) => {
      stats.chunks++;
      if (isNew) stats.fresh++;
    },
  });
  return { stage: s, pool, packer, store, known, stats };
}

describe('backup stage', () => {
  it('gives each file its chunk ids in order, stores each new chunk once, under a small byte budget (backpressure)', async () => {
    const files: { name: string; data: Buffer }[] = [
      { name: 'big.bin', data: bytes(1, 3_000_000) },
      { name: 'log.txt', data: text(2, 1_500_000) },
      { name: 'copy.bin', data: bytes(1, 3_000_000) },
      ...Array.from({ length: 300 }, (_, i) => ({ name: `small-${i}`, data: i % 3 === 0 ? bytes(100 + i, 1 + i * 37) : text(i, 2000) })),
      { name: 'empty', data: Buffer.alloc(0) },
    ];
    for (const f of files) await writeFile(path.join(dir, f.name), f.data);
    // A 200 KiB budget: workers wait for the main thread every few chunks (max chunks exceed it alone).
    const { stage: s, pool, packer, store, stats } = await stage({ budgetBytes: 200 * 1024, maxQueuedBytes: 1024 * 1024 });
    try {
      const outcomes: Promise<FileOutcome>[] = [];
      for (const f of files) outcomes.push((await s.submit(path.join(dir, f.name), f.data.length)).outcome);
      s.flush();
      const done = await Promise.all(outcomes);
      const distinct = new Set<string>();
      done.forEach((o, i) => {
        expect(o.error).toBeNull();
        expect(o.size).toBe(files[i]!.data.length);
        expect(o.after?.size).toBe(BigInt(files[i]!.data.length));
        expect(o.content).toEqual(expectedIds(files[i]!.data));
        for (const id of o.content) distinct.add(id);
      });
      expect(stats.fresh).toBe(distinct.size);
      const packs = await packer.flush();
      const packed = packs.flatMap((p) => p.entries.map((e) => e.id.toString('hex')));
      expect(new Set(packed).size).toBe(packed.length);
      expect(new Set(packed)).toEqual(distinct);
      // Every stored blob opens and matches its id.
      for (const p of packs) {
        const data = await store.get(packKey(p.id.toString('hex')));
        for (const e of readPackHeader(keys.encKey, p.id, data, 'pack')) {
          decodeBlob(keys, e, data.subarray(e.offset, e.offset + e.length), { verifyId: true });
        }
      }
    } finally {
      await pool.close();
    }
  });

  it('makes submit wait while the window is full, and lets it go as files finish (backpressure on the walk)', async () => {
    for (let i = 0; i < 3; i++) await writeFile(path.join(dir, `f${i}`), bytes(40 + i, 300_000));
    const { stage: s, pool } = await stage({ budgetBytes: 1024 * 1024, maxQueuedFiles: 2 });
    try {
      const events: string[] = [];
      const first = (await s.submit(path.join(dir, 'f0'), 300_000)).outcome.then((o) => (events.push('f0 done'), o));
      const second = (await s.submit(path.join(dir, 'f1'), 300_000)).outcome.then((o) => (events.push('f1 done'), o));
      const third = s.submit(path.join(dir, 'f2'), 300_000).then((r) => (events.push('f2 admitted'), r.outcome));
      const last = await (await third);
      await Promise.all([first, second]);
      // The third file got in only once one of the first two was done.
      expect(events.indexOf('f2 admitted')).toBeGreaterThan(Math.min(events.indexOf('f0 done'), events.indexOf('f1 done')));
      expect(last.content).toEqual(expectedIds(bytes(42, 300_000)));
    } finally {
      await pool.close();
    }
  });

  it('decides dedup before sealing: chunks already in the set are neither sealed nor packed', async () => {
    const data = bytes(7, 2_000_000);
    await writeFile(path.join(dir, 'a'), data);
    const known = new BlobIdSet();
    for (const id of expectedIds(data)) known.add(Buffer.from(id, 'hex'));
    const { stage: s, pool, packer, stats } = await stage({ budgetBytes: 1024 * 1024, known });
    try {
      const o = await (await s.submit(path.join(dir, 'a'), data.length)).outcome;
      expect(o.content).toEqual(expectedIds(data));
      expect(stats.fresh).toBe(0);
      expect(packer.pendingBytes).toBe(0);
      expect(await packer.flush()).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  it('reports a file that cannot be opened, and goes on with the others', async () => {
    await writeFile(path.join(dir, 'ok'), 'fine');
    const { stage: s, pool } = await stage({ budgetBytes: 1024 * 1024 });
    try {
      const missing = (await s.submit(path.join(dir, 'missing'), 10)).outcome;
      const ok = (await s.submit(path.join(dir, 'ok'), 4)).outcome;
      s.flush();
      expect((await missing).error).toMatch(/^cannot open: ENOENT/);
      expect((await missing).content).toEqual([]);
      expect((await ok).content).toEqual(expectedIds(Buffer.from('fine')));
    } finally {
      await pool.close();
    }
  });

  it('a pack write that fails fails every pending file and every later submit', async () => {
    const failing: ObjectStore = Object.assign(new MemoryStore(), {
      put: async () => {
        throw new Error('disk full');
      },
    });
    const data = bytes(9, 2_000_000);
    for (let i = 0; i < 4; i++) await writeFile(path.join(dir, `f${i}`), Buffer.concat([Buffer.from([i]), data]));
    const { stage: s, pool } = await stage({ budgetBytes: 512 * 1024, store: failing });
    try {
      const outcomes = [];
      for (let i = 0; i < 4; i++) outcomes.push((await s.submit(path.join(dir, `f${i}`), data.length + 1)).outcome);
      const settled = await Promise.allSettled(outcomes);
      expect(settled.some((r) => r.status === 'rejected' && /disk full/.test(String(r.reason)))).toBe(true);
      await expect(s.submit(path.join(dir, 'f0'), 1)).rejects.toThrow(/disk full/);
    } finally {
      await pool.close();
    }
  });
});
