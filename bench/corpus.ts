// The bench corpus: a deterministic, seeded directory tree that looks like a server's data.
//
// Mix by bytes: ~40% incompressible files of 1–64 MiB (images, media, compressed archives), ~40%
// text-like logs / CSV / JSON lines of 4 KiB–8 MiB (LZ4 ratio ~3-4x), ~20% small files of
// 100 B–16 KiB in nested directories (depth up to 5). Within each class ~10% of the bytes are
// duplicates of earlier files, half exact and half with a small edit (bytes overwritten or inserted).
// `mutate` then changes ~2% of the bytes the way a day of use does: appends to logs, in-place edits in
// big files, inserts that shift content, new small files, deleted small files.
//
// Everything derives from the seed: the plan (paths, sizes, kinds) from one PRNG stream, each file's
// content from its own sub-seed, so files can be written in parallel and the tree is bit-identical
// for the same seed. Incompressible bytes come from AES-128-CTR over zeros (GB/s, deterministic).
//
// CLI (after building): node dist/bench/corpus.js generate DIR --size 2G --seed 1
//                       node dist/bench/corpus.js mutate DIR --seed 2 [--fraction 0.02]
//                       node dist/bench/corpus.js hash DIR
import { createCipheriv } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { availableParallelism } from 'node:os';
import { isMainThread, Worker, workerData } from 'node:worker_threads';
import { deriveSeed, Rng } from './prng.js';
import { textBytes, type TextKind, WORDS } from './textgen.js';
import { byteOrder, hashTree, walkTree } from './treehash.js';

/** Bumped whenever the generated tree for a given (size, seed) changes; cached corpora are keyed on it. */
export const CORPUS_VERSION = 1;

const KiB = 1024;
const MiB = 1024 * KiB;
const PIECE = 1 * MiB;

export type FileClass = 'incompressible' | 'text' | 'small';
type ContentKind = 'random' | TextKind;

interface Content {
  kind: ContentKind;
  seed: number;
  size: number;
}
type Edit = { op: 'overwrite' | 'insert'; offset: number; length: number; seed: number };

export interface PlannedFile {
  rel: string;
  cls: FileClass;
  content: Content;
  /** Set on a near-duplicate: the edit applied to the copied content. */
  edit?: Edit;
  /** Set on a duplicate: the path of the original. */
  dupOf?: string;
  size: number;
}

export interface ClassStats {
  files: number;
  bytes: number;
}

export interface CorpusStats {
  seed: number;
  sizeRequested: number;
  files: number;
  dirs: number;
  bytes: number;
  maxDirDepth: number;
  byClass: Record<FileClass, ClassStats>;
  duplicates: { files: number; bytes: number; exact: number; edited: number };
}

export interface GenerateOptions {
  sizeBytes: number;
  seed: number;
  /** Files written at once per thread (default 6). */
  concurrency?: number;
  /** Worker threads for the big files (default: one per core when running compiled JS; 0 = in-process). */
  workers?: number;
}

const SHARE: Record<FileClass, number> = { incompressible: 0.4, text: 0.4, small: 0.2 };
const RANGE: Record<FileClass, [number, number]> = {
  incompressible: [1 * MiB, 64 * MiB],
  text: [4 * KiB, 8 * MiB],
  small: [100, 16 * KiB],
};
const DUP_SHARE = 0.1;
const DUP_CAP = 0.16;
const MAX_DIR_DEPTH = 5;
const SMALL_ROOT = 'projects';
const TEXT_EXT = new Set(['.log', '.csv', '.jsonl']);
const BIG_EXT = new Set(['.img', '.jpg', '.zst', '.bin']);
const SMALL_TEXT_EXT = ['.txt', '.md', '.json', '.ts', '.py', '.conf', '.yaml'];
const SMALL_BIN_EXT = ['.dat', '.png', '.gz'];

// ---------------------------------------------------------------------------------------------
// Content streams

const ZEROS = Buffer.alloc(PIECE);

/** `size` incompressible bytes from AES-128-CTR keyed by the seed. */
export function* randomBytes(seed: number, size: number): Generator<Buffer> {
  const r = new Rng(seed);
  const key = r.fill(Buffer.alloc(16));
  const iv = r.fill(Buffer.alloc(16));
  const c = createCipheriv('aes-128-ctr', key, iv);
  let left = size;
  while (left > 0) {
    const n = Math.min(PIECE, left);
    yield c.update(n === PIECE ? ZEROS : ZEROS.subarray(0, n));
    left -= n;
  }
}

function contentBytes(c: Content): Generator<Buffer> {
  return c.kind === 'random' ? randomBytes(c.seed, c.size) : textBytes(c.kind, c.seed, c.size);
}

function editBytes(kind: ContentKind, seed: number, length: number): Buffer {
  if (kind === 'random') return Buffer.concat([...randomBytes(seed, length)]);
  // A text edit: printable words, so the file stays text.
  const r = new Rng(seed);
  let s = '';
  while (s.length < length) s += r.pick(WORDS) + ' ';
  return Buffer.from(s.slice(0, length), 'latin1');
}

/** The content stream with an edit applied: `overwrite` replaces bytes, `insert` shifts the rest. */
function* edited(src: Iterable<Buffer>, kind: ContentKind, edit: Edit | undefined): Generator<Buffer> {
  if (!edit) {
    yield* src;
    return;
  }
  const patch = editBytes(kind, edit.seed, edit.length);
  let pos = 0;
  let inserted = false;
  for (const b of src) {
    const end = pos + b.length;
    if (edit.op === 'insert') {
      if (!inserted && edit.offset >= pos && edit.offset < end) {
        const at = edit.offset - pos;
        yield b.subarray(0, at);
        yield patch;
        yield b.subarray(at);
        inserted = true;
      } else yield b;
    } else {
      const from = Math.max(pos, edit.offset);
      const to = Math.min(end, edit.offset + edit.length);
      if (from < to) {
        const copy = Buffer.from(b);
        patch.copy(copy, from - pos, from - edit.offset, to - edit.offset);
        yield copy;
      } else yield b;
    }
    pos = end;
  }
  if (edit.op === 'insert' && !inserted) yield patch;
}

// ---------------------------------------------------------------------------------------------
// The plan

function classRange(cls: FileClass, budget: number): [number, number] {
  const [lo, hi] = RANGE[cls];
  // Scale the largest file down for small corpora so each class still has several files.
  const max = Math.min(hi, Math.max(lo * 2, Math.floor(budget / 6)));
  return [Math.min(lo, max), max];
}

class Planner {
  readonly files: PlannedFile[] = [];
  private readonly used = new Set<string>();
  private readonly r: Rng;
  private fileNo = 0;
  readonly smallDirs: { rel: string; depth: number }[] = [];

  constructor(readonly seed: number) {
    this.r = new Rng(deriveSeed(seed, 0x91a2));
  }

  private unique(rel: string): string {
    if (!this.used.has(rel)) {
      this.used.add(rel);
      return rel;
    }
    const ext = extname(rel);
    const stem = rel.slice(0, rel.length - ext.length);
    for (let i = 2; ; i++) {
      const c = `${stem}-${i}${ext}`;
      if (!this.used.has(c)) {
        this.used.add(c);
        return c;
      }
    }
  }

  private contentSeed(): number {
    return deriveSeed(this.seed, 0xc0, this.fileNo++);
  }

  private freshPath(cls: FileClass, kind: ContentKind): string {
    const r = this.r;
    const n = String(r.int(0, 99999)).padStart(5, '0');
    const w = r.pick(WORDS);
    if (cls === 'incompressible') {
      switch (r.int(0, 3)) {
        case 0: return `images/${w}/vm-${n}.img`;
        case 1: return `media/photos/${r.int(2015, 2024)}/IMG_${n}.jpg`;
        case 2: return `archives/${w}/${w}-${n}.tar.zst`;
        default: return `data/blobs/${r.hex(2)}/${r.hex(16)}.bin`;
      }
    }
    if (cls === 'text') {
      if (kind === 'log') return `logs/${w}/${w}-${r.int(2023, 2024)}-${String(r.int(1, 12)).padStart(2, '0')}-${String(r.int(1, 28)).padStart(2, '0')}-${n}.log`;
      if (kind === 'csv') return `exports/${w}/part-${n}.csv`;
      return `events/${w}/events-${n}.jsonl`;
    }
    const d = r.pick(this.smallDirs);
    const bin = kind === 'random';
    return `${d.rel}/${r.pick(WORDS)}-${n}${r.pick(bin ? SMALL_BIN_EXT : SMALL_TEXT_EXT)}`;
  }

  private dupPath(orig: PlannedFile): string {
    const r = this.r;
    const ext = orig.rel.endsWith('.tar.zst') ? '.tar.zst' : extname(orig.rel);
    const stem = orig.rel.slice(0, orig.rel.length - ext.length);
    const base = stem.slice(stem.lastIndexOf('/') + 1);
    if (orig.cls === 'small') {
      // Another directory of the small-file tree, same name: the copy a user made of a project file.
      const d = r.pick(this.smallDirs);
      return `${d.rel}/${base}${ext}`;
    }
    return r.chance(0.5) ? `${stem}.bak${ext}` : `old/${orig.rel}`;
  }

  buildSmallDirs(count: number): void {
    const r = this.r;
    const dirs = this.smallDirs;
    const names = new Set<string>([SMALL_ROOT]);
    dirs.push({ rel: SMALL_ROOT, depth: 1 });
    for (let i = 1; i < count; i++) {
      // Mostly below one of the last few directories made (deep branches), sometimes anywhere (wide trees).
      let parent = r.chance(0.6) ? (dirs[dirs.length - 1 - r.int(0, Math.min(4, dirs.length - 1))] as { rel: string; depth: number }) : r.pick(dirs);
      while (parent.depth >= MAX_DIR_DEPTH) parent = r.pick(dirs);
      let rel = `${parent.rel}/${r.pick(WORDS)}`;
      if (names.has(rel)) rel = `${rel}-${i}`;
      names.add(rel);
      dirs.push({ rel, depth: parent.depth + 1 });
    }
  }

  planClass(cls: FileClass, budget: number): void {
    const r = this.r;
    const [lo, hi] = classRange(cls, budget);
    const mine: PlannedFile[] = [];
    let produced = 0;
    let dupBytes = 0;
    while (produced < budget) {
      const remaining = budget - produced;
      if (remaining < Math.min(lo, 100)) break;
      // Duplicates: ~DUP_SHARE of the files (so also ~of the bytes), of a uniformly chosen earlier
      // original that fits, with a cap so that one huge copy cannot skew a class with few files.
      if (mine.length > 0 && r.chance(DUP_SHARE)) {
        const c = r.pick(mine);
        const orig = c.dupOf ? undefined : c;
        if (orig && orig.content.size <= remaining && dupBytes + orig.content.size <= DUP_CAP * budget) {
          const f = this.duplicate(orig);
          mine.push(f);
          produced += f.size;
          dupBytes += f.size;
          continue;
        }
      }
      let size = cls === 'small' ? r.int(lo, hi) : r.logInt(lo, hi);
      size = Math.min(size, remaining);
      const kind: ContentKind =
        cls === 'incompressible' ? 'random'
          : cls === 'text' ? (r.chance(0.4) ? 'log' : r.chance(0.5) ? 'csv' : 'jsonl')
            : r.chance(0.6) ? 'prose' : 'random';
      const content: Content = { kind, seed: this.contentSeed(), size };
      const f: PlannedFile = { rel: this.unique(this.freshPath(cls, kind)), cls, content, size };
      mine.push(f);
      produced += size;
    }
    // Not push(...mine): at 8 GiB a class has ~200k files, past the engine's limit on call arguments
    // ("Maximum call stack size exceeded").
    for (const f of mine) this.files.push(f);
  }

  private duplicate(orig: PlannedFile): PlannedFile {
    const r = this.r;
    const rel = this.unique(this.dupPath(orig));
    const size0 = orig.content.size;
    if (r.chance(0.5) || size0 < 2) return { rel, cls: orig.cls, content: orig.content, dupOf: orig.rel, size: size0 };
    const length = Math.min(r.int(1, 64), Math.max(1, size0 - 1));
    const op = r.chance(0.5) ? 'overwrite' : 'insert';
    const offset = r.int(0, size0 - length);
    const edit: Edit = { op, offset, length, seed: this.contentSeed() };
    return { rel, cls: orig.cls, content: orig.content, edit, dupOf: orig.rel, size: size0 + (op === 'insert' ? length : 0) };
  }
}

/** The files and directories of a corpus, without writing anything (exported for tests). */
export function plan(sizeBytes: number, seed: number): { files: PlannedFile[]; dirs: string[] } {
  const p = new Planner(seed);
  const smallBudget = Math.floor(sizeBytes * SHARE.small);
  const [slo, shi] = RANGE.small;
  const expectedSmall = Math.max(1, Math.round(smallBudget / ((slo + shi) / 2)));
  p.buildSmallDirs(Math.max(1, Math.round(expectedSmall / 24)));
  p.planClass('incompressible', Math.floor(sizeBytes * SHARE.incompressible));
  p.planClass('text', Math.floor(sizeBytes * SHARE.text));
  p.planClass('small', smallBudget);
  return { files: p.files, dirs: p.smallDirs.map((d) => d.rel) };
}

// ---------------------------------------------------------------------------------------------
// Generation

async function writeStream(path: string, pieces: Iterable<Buffer>): Promise<number> {
  const fh = await open(path, 'w');
  let n = 0;
  try {
    for (const b of pieces) {
      let off = 0;
      while (off < b.length) {
        const { bytesWritten } = await fh.write(b, off, b.length - off);
        off += bytesWritten;
      }
      n += b.length;
    }
  } finally {
    await fh.close();
  }
  return n;
}

async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  async function worker(): Promise<void> {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      await fn(items[i] as T);
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, () => worker()));
}

async function writeFiles(dir: string, files: readonly PlannedFile[], conc: number): Promise<void> {
  const big = files.filter((f) => f.size > 64 * KiB);
  const small = files.filter((f) => f.size <= 64 * KiB);
  await Promise.all([
    pool(big, conc, async (f) => {
      await writeStream(join(dir, f.rel), edited(contentBytes(f.content), f.content.kind, f.edit));
    }),
    pool(small, conc * 4, async (f) => {
      await writeFile(join(dir, f.rel), Buffer.concat([...edited(contentBytes(f.content), f.content.kind, f.edit)]));
    }),
  ]);
}

/** Split files into `n` lists of about equal bytes (largest first, each to the lightest list). */
function partition(files: readonly PlannedFile[], n: number): PlannedFile[][] {
  const parts: PlannedFile[][] = Array.from({ length: n }, () => []);
  const load = new Array<number>(n).fill(0);
  for (const f of [...files].sort((a, b) => b.size - a.size || byteOrder(a.rel, b.rel))) {
    let i = 0;
    for (let k = 1; k < load.length; k++) if (load[k]! < load[i]!) i = k;
    (parts[i] as PlannedFile[]).push(f);
    load[i] = (load[i] as number) + f.size;
  }
  return parts;
}

interface WriterData {
  corpusWriter: true;
  dir: string;
  files: PlannedFile[];
  conc: number;
}

function runWriter(dir: string, files: PlannedFile[], conc: number): Promise<void> {
  return new Promise((resolveP, reject) => {
    const data: WriterData = { corpusWriter: true, dir, files, conc };
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: data });
    w.on('error', reject);
    w.on('exit', (code) => (code === 0 ? resolveP() : reject(new Error(`corpus writer thread exited with ${code}`))));
  });
}

/** Generate the corpus into `dir` (created; must not exist or be empty). */
export async function generateCorpus(dir: string, opts: GenerateOptions): Promise<CorpusStats> {
  const { sizeBytes, seed } = opts;
  if (!Number.isFinite(sizeBytes) || sizeBytes < 64 * KiB) throw new Error(`corpus size too small: ${sizeBytes}`);
  await mkdir(dir, { recursive: true });
  if ((await readdir(dir)).length > 0) throw new Error(`corpus directory is not empty: ${dir}`);
  const { files, dirs } = plan(sizeBytes, seed);

  const allDirs = new Set<string>(dirs);
  for (const f of files) for (let d = dirname(f.rel); d !== '.'; d = dirname(d)) allDirs.add(d);
  for (const d of [...allDirs].sort(byteOrder)) await mkdir(join(dir, d), { recursive: true });

  // Worker threads share the files (content generation is CPU-bound); each streams the big ones a few
  // at a time and writes the small ones whole.
  const conc = opts.concurrency ?? 6;
  const canFork = import.meta.url.endsWith('.js'); // under vitest the module is TS: no worker entry point
  const nWorkers = Math.min(files.length, opts.workers ?? (canFork ? availableParallelism() : 0));
  if (nWorkers > 0 && canFork) await Promise.all(partition(files, nWorkers).map((part) => runWriter(dir, part, conc)));
  else await writeFiles(dir, files, conc);

  const byClass: Record<FileClass, ClassStats> = {
    incompressible: { files: 0, bytes: 0 },
    text: { files: 0, bytes: 0 },
    small: { files: 0, bytes: 0 },
  };
  const duplicates = { files: 0, bytes: 0, exact: 0, edited: 0 };
  let bytes = 0;
  for (const f of files) {
    byClass[f.cls].files++;
    byClass[f.cls].bytes += f.size;
    bytes += f.size;
    if (f.dupOf) {
      duplicates.files++;
      duplicates.bytes += f.size;
      if (f.edit) duplicates.edited++;
      else duplicates.exact++;
    }
  }
  let maxDirDepth = 0;
  for (const d of allDirs) maxDirDepth = Math.max(maxDirDepth, d.split('/').length);
  return { seed, sizeRequested: sizeBytes, files: files.length, dirs: allDirs.size, bytes, maxDirDepth, byClass, duplicates };
}

// ---------------------------------------------------------------------------------------------
// Mutation

export interface MutateOptions {
  seed: number;
  /** Fraction of the corpus bytes to change (default 0.02). */
  fraction?: number;
}

export interface MutateStats {
  bytesBefore: number;
  target: number;
  changedBytes: number;
  appended: ClassStats;
  overwritten: ClassStats;
  inserted: ClassStats;
  created: ClassStats;
  deleted: ClassStats;
}

const MUTATION_SHARE = { append: 0.3, overwrite: 0.3, insert: 0.15, create: 0.15, delete: 0.1 };

function textKindOf(rel: string): TextKind {
  const ext = extname(rel);
  return ext === '.csv' ? 'csv' : ext === '.jsonl' ? 'jsonl' : 'log';
}

/** Change about `fraction` of the bytes under `dir`, deterministically for a given tree and seed. */
export async function mutate(dir: string, opts: MutateOptions): Promise<MutateStats> {
  const fraction = opts.fraction ?? 0.02;
  if (!(fraction > 0 && fraction < 1)) throw new Error(`fraction must be in (0, 1): ${fraction}`);
  const r = new Rng(deriveSeed(opts.seed, 0x3a7e));
  const entries = (await walkTree(dir)).filter((e) => e.type === 'file');
  const bytesBefore = entries.reduce((s, e) => s + e.size, 0);
  const target = Math.round(bytesBefore * fraction);
  const sizes = new Map(entries.map((e) => [e.rel, e.size]));
  const text = entries.filter((e) => TEXT_EXT.has(extname(e.rel))).map((e) => e.rel);
  const big = entries.filter((e) => BIG_EXT.has(extname(e.rel)) && e.size > RANGE.small[1]).map((e) => e.rel);
  const small = entries.filter((e) => !TEXT_EXT.has(extname(e.rel)) && e.size <= RANGE.small[1]).map((e) => e.rel);
  const smallDirs = [...new Set(small.map((rel) => dirname(rel)))].sort(byteOrder);
  const st: MutateStats = {
    bytesBefore, target, changedBytes: 0,
    appended: { files: 0, bytes: 0 }, overwritten: { files: 0, bytes: 0 }, inserted: { files: 0, bytes: 0 },
    created: { files: 0, bytes: 0 }, deleted: { files: 0, bytes: 0 },
  };
  // Size of one operation: a few per kind even on a small corpus, at most 4 MiB on a big one.
  const opRange = (share: number, lo: number): [number, number] => {
    const hi = Math.max(lo, Math.min(4 * MiB, Math.floor((target * share) / 4)));
    return [Math.min(lo, hi), hi];
  };

  // Appends to logs, CSV and JSON lines.
  if (text.length > 0) {
    const [lo, hi] = opRange(MUTATION_SHARE.append, 4 * KiB);
    while (st.appended.bytes < target * MUTATION_SHARE.append) {
      const rel = r.pick(text);
      const len = r.logInt(lo, hi);
      const piece = Buffer.concat([...textBytes(textKindOf(rel), r.u32(), len)]);
      const kind = textKindOf(rel);
      // A CSV append must not repeat the header: drop the first line of what was generated.
      const data = kind === 'csv' ? piece.subarray(piece.indexOf(0x0a) + 1) : piece;
      const fh = await open(join(dir, rel), 'a');
      await fh.write(data);
      await fh.close();
      sizes.set(rel, (sizes.get(rel) ?? 0) + data.length);
      st.appended.files++;
      st.appended.bytes += data.length;
    }
  }

  // In-place edits in big files (same size, new content in a range).
  if (big.length > 0) {
    const [lo, hi] = opRange(MUTATION_SHARE.overwrite, 4 * KiB);
    while (st.overwritten.bytes < target * MUTATION_SHARE.overwrite) {
      const rel = r.pick(big);
      const size = sizes.get(rel) ?? 0;
      const len = Math.min(size, r.logInt(lo, hi));
      const offset = r.int(0, size - len);
      const data = Buffer.concat([...randomBytes(r.u32(), len)]);
      const fh = await open(join(dir, rel), 'r+');
      await fh.write(data, 0, data.length, offset);
      await fh.close();
      st.overwritten.files++;
      st.overwritten.bytes += len;
    }
  }

  // Inserts in the middle of text and big files: everything after the insert point shifts.
  const insertable = [...text, ...big].sort(byteOrder).filter((rel) => (sizes.get(rel) ?? 0) >= 16 * KiB);
  if (insertable.length > 0) {
    const [lo, hi] = opRange(MUTATION_SHARE.insert, 1 * KiB);
    while (st.inserted.bytes < target * MUTATION_SHARE.insert) {
      const rel = r.pick(insertable);
      const abs = join(dir, rel);
      const old = await readFile(abs);
      const len = r.logInt(lo, hi);
      const at = r.int(Math.floor(old.length / 4), Math.floor((3 * old.length) / 4));
      const isText = TEXT_EXT.has(extname(rel));
      const data = isText ? editBytes(textKindOf(rel), r.u32(), len) : editBytes('random', r.u32(), len);
      const tmp = `${abs}.mutate-tmp`;
      await writeFile(tmp, Buffer.concat([old.subarray(0, at), data, old.subarray(at)]));
      await rename(tmp, abs);
      sizes.set(rel, old.length + len);
      st.inserted.files++;
      st.inserted.bytes += len;
    }
  }

  // Deleted small files (chosen before creating new ones, so a new file is never deleted again).
  const deletable = [...small];
  while (deletable.length > 0 && st.deleted.bytes < target * MUTATION_SHARE.delete) {
    const i = r.int(0, deletable.length - 1);
    const rel = deletable[i] as string;
    deletable.splice(i, 1);
    await unlink(join(dir, rel));
    st.deleted.files++;
    st.deleted.bytes += sizes.get(rel) ?? 0;
    sizes.delete(rel);
  }

  // New small files in existing directories of the small-file tree.
  const dirs = smallDirs.length > 0 ? smallDirs : ['.'];
  let k = 0;
  const tag = (opts.seed >>> 0).toString(16);
  while (st.created.bytes < target * MUTATION_SHARE.create) {
    const [lo, hi] = RANGE.small;
    const len = r.int(lo, hi);
    const textual = r.chance(0.6);
    const rel = `${r.pick(dirs)}/new-${tag}-${k++}${textual ? r.pick(SMALL_TEXT_EXT) : r.pick(SMALL_BIN_EXT)}`;
    const data = Buffer.concat([...(textual ? textBytes('prose', r.u32(), len) : randomBytes(r.u32(), len))]);
    await mkdir(join(dir, dirname(rel)), { recursive: true });
    await writeFile(join(dir, rel), data);
    st.created.files++;
    st.created.bytes += len;
  }

  st.changedBytes = st.appended.bytes + st.overwritten.bytes + st.inserted.bytes + st.created.bytes + st.deleted.bytes;
  return st;
}

// ---------------------------------------------------------------------------------------------
// Sizes and the CLI

/** "2G", "64M", "512K", "8GiB", "1.5G", "1000000" → bytes (binary units). */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(s);
  if (!m) throw new Error(`bad size: ${s}`);
  const mult: Record<string, number> = { '': 1, k: KiB, m: MiB, g: 1024 * MiB, t: 1024 * 1024 * MiB };
  return Math.round(Number(m[1]) * (mult[(m[2] ?? '').toLowerCase()] ?? 1));
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(2)} ${units[u]}`;
}

const USAGE = `usage:
  corpus generate DIR [--size 2G] [--seed 1]        create a deterministic corpus in DIR (empty or new)
  corpus mutate DIR [--seed 2] [--fraction 0.02]    change ~fraction of its bytes
  corpus hash DIR                                    tree hash (paths, sizes, contents)`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      size: { type: 'string', default: '2G' },
      seed: { type: 'string' },
      fraction: { type: 'string', default: '0.02' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, dirArg] = positionals;
  if (values.help || !cmd || !dirArg) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const dir = resolve(dirArg);
  const t0 = performance.now();
  if (cmd === 'generate') {
    const stats = await generateCorpus(dir, { sizeBytes: parseSize(values.size ?? '2G'), seed: Number(values.seed ?? 1) });
    console.log(JSON.stringify({ ...stats, seconds: +((performance.now() - t0) / 1000).toFixed(2) }, null, 2));
    return 0;
  }
  if (cmd === 'mutate') {
    await stat(dir);
    const stats = await mutate(dir, { seed: Number(values.seed ?? 2), fraction: Number(values.fraction) });
    console.log(JSON.stringify({ ...stats, seconds: +((performance.now() - t0) / 1000).toFixed(2) }, null, 2));
    return 0;
  }
  if (cmd === 'hash') {
    console.log(JSON.stringify(await hashTree(dir), null, 2));
    return 0;
  }
  console.error(USAGE);
  return 2;
}

/** Remove a directory tree if it exists. */
export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}

if (!isMainThread && (workerData as Partial<WriterData> | null)?.corpusWriter) {
  const d = workerData as WriterData;
  await writeFiles(d.dir, d.files, d.conc);
}

if (isMainThread && process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
