import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { lz4CompressInto, lz4FramedBound } from '../src/replica/lz4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCorpus, mutate, parseSize, plan, type CorpusStats } from './corpus.js';
import { Rng } from './prng.js';
import { hashTree, walkTree } from './treehash.js';

const SIZE = 8 * 1024 * 1024;
let root: string;
let a: string;
let statsA: CorpusStats;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'strata-corpus-'));
  a = join(root, 'a');
  statsA = await generateCorpus(a, { sizeBytes: SIZE, seed: 1 });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

type Cls = 'incompressible' | 'text' | 'small';
function classOf(rel: string): Cls {
  if (rel.startsWith('projects/')) return 'small';
  if (['.log', '.csv', '.jsonl'].includes(extname(rel))) return 'text';
  return 'incompressible';
}

async function files(dir: string): Promise<{ rel: string; size: number; data: Buffer }[]> {
  const out = [];
  for (const e of await walkTree(dir)) if (e.type === 'file') out.push({ rel: e.rel, size: e.size, data: await readFile(join(dir, e.rel)) });
  return out;
}

describe('generateCorpus', () => {
  it('gives the same tree for the same seed and a different one for another seed', async () => {
    const b = join(root, 'b');
    const c = join(root, 'c');
    await generateCorpus(b, { sizeBytes: SIZE, seed: 1 });
    await generateCorpus(c, { sizeBytes: SIZE, seed: 2 });
    const [ha, hb, hc] = await Promise.all([hashTree(a), hashTree(b), hashTree(c)]);
    expect(hb.hash).toBe(ha.hash);
    expect(hc.hash).not.toBe(ha.hash);
    expect(ha.files).toBe(statsA.files);
    expect(ha.bytes).toBe(statsA.bytes);
    await Promise.all([rm(b, { recursive: true }), rm(c, { recursive: true })]);
  });

  it('refuses a non-empty directory', async () => {
    await expect(generateCorpus(a, { sizeBytes: SIZE, seed: 1 })).rejects.toThrow(/not empty/);
  });

  it('has about the asked size and the 40/40/20 mix by bytes', async () => {
    const all = await files(a);
    const total = all.reduce((s, f) => s + f.size, 0);
    expect(total).toBeGreaterThan(SIZE * 0.97);
    expect(total).toBeLessThanOrEqual(SIZE);
    const by: Record<Cls, number> = { incompressible: 0, text: 0, small: 0 };
    for (const f of all) by[classOf(f.rel)] += f.size;
    expect(by.incompressible / total).toBeGreaterThan(0.35);
    expect(by.incompressible / total).toBeLessThan(0.45);
    expect(by.text / total).toBeGreaterThan(0.35);
    expect(by.text / total).toBeLessThan(0.45);
    expect(by.small / total).toBeGreaterThan(0.15);
    expect(by.small / total).toBeLessThan(0.25);
    // The generator's own accounting agrees with what is on disk.
    expect(statsA.byClass.small.bytes).toBe(by.small);
    expect(statsA.byClass.text.bytes).toBe(by.text);
  });

  it('keeps small files within 100 B-16 KiB, nested at most 5 directories deep', async () => {
    const small = (await walkTree(a)).filter((e) => e.type === 'file' && classOf(e.rel) === 'small');
    expect(small.length).toBeGreaterThan(100);
    for (const f of small) {
      expect(f.size).toBeGreaterThanOrEqual(100);
      expect(f.size).toBeLessThanOrEqual(16 * 1024 + 64); // + a near-duplicate's insert
      expect(f.rel.split('/').length - 1).toBeLessThanOrEqual(5);
    }
    expect(Math.max(...small.map((f) => f.rel.split('/').length - 1))).toBeGreaterThanOrEqual(3);
  });

  it('makes text compress 2.5-5x with LZ4 and random data not at all', async () => {
    let textRaw = 0;
    let textLz = 0;
    let binRaw = 0;
    let binLz = 0;
    for (const f of await files(a)) {
      const cls = classOf(f.rel);
      if (cls === 'small') continue;
      let lz = 0;
      for (let o = 0; o < f.data.length; o += 1 << 20) lz += lz4CompressInto(f.data.subarray(o, o + (1 << 20)), Buffer.allocUnsafe(lz4FramedBound(1 << 20)));
      if (cls === 'text') {
        textRaw += f.size;
        textLz += lz;
      } else {
        binRaw += f.size;
        binLz += lz;
      }
    }
    expect(textRaw / textLz).toBeGreaterThan(2.5);
    expect(textRaw / textLz).toBeLessThan(5);
    expect(binRaw / binLz).toBeLessThan(1.001);
  });

  it('duplicates about 10% of the files, exactly or with a small edit', async () => {
    const all = await files(a);
    const seen = new Map<string, number>();
    let exactCopies = 0;
    for (const f of all) {
      const h = createHash('sha256').update(f.data).digest('hex');
      const n = seen.get(h) ?? 0;
      if (n > 0) exactCopies++;
      seen.set(h, n + 1);
    }
    const d = statsA.duplicates;
    expect(d.files / statsA.files).toBeGreaterThan(0.05);
    expect(d.files / statsA.files).toBeLessThan(0.15);
    expect(d.bytes / statsA.bytes).toBeGreaterThan(0.04);
    expect(d.bytes / statsA.bytes).toBeLessThan(0.2);
    expect(d.exact).toBeGreaterThan(0);
    expect(d.edited).toBeGreaterThan(0);
    // Every exact duplicate shows up as a repeated content (small files may also collide by chance: none here).
    expect(exactCopies).toBeGreaterThanOrEqual(d.exact);
  });
});

// An independent measure of how much changed: content-defined chunks (gear hash, ~1 KiB) of every
// file before and after; bytes in chunks that are new after, plus the bytes of files deleted.
function gearChunks(data: Buffer): Buffer[] {
  const gear = new Uint32Array(256);
  const r = new Rng(42);
  for (let i = 0; i < 256; i++) gear[i] = r.u32();
  const out: Buffer[] = [];
  let start = 0;
  let h = 0;
  for (let i = 0; i < data.length; i++) {
    h = ((h << 1) + (gear[data[i] as number] as number)) >>> 0;
    const len = i + 1 - start;
    if ((len >= 256 && (h & 0xffc00000) === 0) || len >= 8192) {
      out.push(data.subarray(start, i + 1));
      start = i + 1;
      h = 0;
    }
  }
  if (start < data.length) out.push(data.subarray(start));
  return out;
}

async function changedBytes(before: string, after: string): Promise<number> {
  const old = new Set<string>();
  const oldFiles = await files(before);
  for (const f of oldFiles) for (const c of gearChunks(f.data)) old.add(createHash('sha1').update(c).digest('hex'));
  const newFiles = await files(after);
  const present = new Set(newFiles.map((f) => f.rel));
  let n = 0;
  for (const f of newFiles) for (const c of gearChunks(f.data)) if (!old.has(createHash('sha1').update(c).digest('hex'))) n += c.length;
  for (const f of oldFiles) if (!present.has(f.rel)) n += f.size;
  return n;
}

describe('mutate', () => {
  it('changes about the fraction asked, in every way, deterministically', async () => {
    const m1 = join(root, 'm1');
    const m2 = join(root, 'm2');
    await cp(a, m1, { recursive: true });
    await cp(a, m2, { recursive: true });
    const s1 = await mutate(m1, { seed: 2, fraction: 0.02 });
    const s2 = await mutate(m2, { seed: 2, fraction: 0.02 });
    expect(s2).toEqual(s1);
    const [h0, h1, h2] = await Promise.all([hashTree(a), hashTree(m1), hashTree(m2)]);
    expect(h1.hash).toBe(h2.hash);
    expect(h1.hash).not.toBe(h0.hash);

    expect(s1.bytesBefore).toBe(h0.bytes);
    expect(s1.changedBytes / s1.bytesBefore).toBeGreaterThan(0.018);
    expect(s1.changedBytes / s1.bytesBefore).toBeLessThan(0.035);
    for (const k of ['appended', 'overwritten', 'inserted', 'created', 'deleted'] as const) expect(s1[k].files).toBeGreaterThan(0);
    // Sizes add up: appends, inserts and new files grow the tree, deletions shrink it.
    expect(h1.bytes - h0.bytes).toBe(s1.appended.bytes + s1.inserted.bytes + s1.created.bytes - s1.deleted.bytes);
    expect(h1.files - h0.files).toBe(s1.created.files - s1.deleted.files);

    const measured = await changedBytes(a, m1);
    expect(measured / s1.target).toBeGreaterThan(0.7);
    expect(measured / s1.target).toBeLessThan(2.5);
  });

  it('with another seed changes other things', async () => {
    const m3 = join(root, 'm3');
    const m4 = join(root, 'm4');
    await cp(a, m3, { recursive: true });
    await cp(a, m4, { recursive: true });
    await mutate(m3, { seed: 2 });
    await mutate(m4, { seed: 3 });
    expect((await hashTree(m3)).hash).not.toBe((await hashTree(m4)).hash);
  });
});

describe('parseSize', () => {
  it('reads binary units', () => {
    expect(parseSize('2G')).toBe(2 * 1024 ** 3);
    expect(parseSize('64M')).toBe(64 * 1024 ** 2);
    expect(parseSize('8GiB')).toBe(8 * 1024 ** 3);
    expect(parseSize('512k')).toBe(512 * 1024);
    expect(parseSize('1.5G')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('1000')).toBe(1000);
    expect(() => parseSize('lots')).toThrow();
  });
});

describe('plan at 8 GiB', () => {
  it('plans a corpus whose small-file class has ~200k files without overflowing the stack (was push(...files))', () => {
    const size = parseSize('8G');
    const p = plan(size, 1);
    const small = p.files.filter((f) => f.cls === 'small');
    expect(small.length).toBeGreaterThan(150_000);
    const total = p.files.reduce((a, f) => a + f.size, 0);
    expect(total).toBeGreaterThan(size * 0.99);
    expect(total).toBeLessThanOrEqual(size);
  });
});
