// The work done in pipeline workers: reading, chunking, hashing, compressing and sealing files for a
// backup; decoding blobs and writing files for a restore; verifying packs for a check. CPU-bound and
// synchronous I/O (a worker has nothing else to do while it waits); everything a task produces goes
// back to the main thread, which alone decides dedup, writes packs and touches the catalog.
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  ftruncateSync,
  futimesSync,
  lchownSync,
  lutimesSync,
  openSync,
  readSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { sharedHas, type SharedIdTable } from '../../catalog/blob-id-set.js';
import { SEAL_OVERHEAD } from '../../crypto/aead.js';
import { blobId } from '../../crypto/hash.js';
import { NotFoundError } from '../../errors.js';
import { compressBlob, decodeBlob, sealParts } from '../blob-codec.js';
import { Chunker, type ChunkerParams } from '../chunker.js';
import { BlobType, Compression, decodeEntries, openPackHeader, type PackEntry } from '../pack.js';
import { unsafe, utimeSeconds } from '../restore-target.js';
import { ByteBudget } from './byte-budget.js';
import { GarbageMeter, releaseReplacedTable } from './gc.js';
import type { TaskContext, WorkerHandlers } from './protocol.js';

export interface WorkerInit {
  encKey: Uint8Array;
  idKey: Uint8Array;
  chunker?: { params: ChunkerParams; gear: Uint32Array };
  /** This worker's byte budget for sealed blobs handed over and not yet consumed (backup). */
  budget?: { sab: SharedArrayBuffer; capacity: number };
  /** The dedup set's table at start (backup); replaced by `{ known }` control messages as it grows. */
  known?: SharedIdTable;
  /** Bytes read from a file at once (backup; default 1 MiB). */
  readBytes?: number;
}

// --- backup ---

export interface BackupFilesTask {
  /** Absolute paths, read whole, each in order. */
  paths: string[];
  /** Their sizes when listed: a short read that reaches this size is taken as end of file. */
  sizes: number[];
}

/**
 * A partial result of a backup-files task: the chunks found since the previous one (in file order),
 * then the files finished. A chunk the worker found in the shared dedup table has `body` -1: nothing
 * was sealed. The others were sealed: chunk k is nonceTags[12 * j .. ] (nonce, 12 bytes), then
 * bodies[j] (the ciphertext, transferred), then the tag (the 16 bytes after the nonce), where
 * j = body[k]. `budget` is the number of bytes the main thread releases once it consumed this part.
 */
export interface BackupPart {
  file: Int32Array;
  raw: Int32Array;
  comp: Uint8Array;
  ids: Uint8Array;
  body: Int32Array;
  bodies: Uint8Array[];
  nonceTags: Uint8Array;
  budget: number;
  done: FileDone[];
}

export interface FileDone {
  file: number;
  /** Bytes read (the sum of the file's chunks). */
  size: number;
  /** fstat of the open file after reading: to tell whether it changed while being read. */
  after: { size: bigint; mtimeNs: bigint; ino: bigint } | null;
  /** Why the file could not be backed up ("cannot open: …", "read failed: …"); its chunks are then to be ignored. */
  error: string | null;
}

/** Partial results are posted at least this often, so the main thread can keep packing and releasing budget. */
const PART_BYTES = 1024 * 1024;
const PART_CHUNKS = 512;
const PART_FILES = 64;

class BackupWorker {
  readonly #encKey: Buffer;
  readonly #idKey: Buffer;
  readonly #chunker: Chunker;
  readonly #budget: ByteBudget;
  readonly #buf: Buffer;
  readonly #readBytes: number;
  known: SharedIdTable | null;
  // The partial result being gathered.
  #file: number[] = [];
  #raw: number[] = [];
  #comp: number[] = [];
  #ids: Buffer[] = [];
  #body: number[] = [];
  #bodies: Buffer[] = [];
  #nonceTags: Buffer[] = [];
  #acquired = 0;
  #done: FileDone[] = [];
  readonly #garbage = new GarbageMeter();
  #ctx: TaskContext | null = null;

  constructor(init: WorkerInit) {
    if (!init.chunker || !init.budget) throw new Error('backup worker needs chunker parameters and a byte budget');
    this.#encKey = Buffer.from(init.encKey);
    this.#idKey = Buffer.from(init.idKey);
    this.#chunker = new Chunker(init.chunker.params, init.chunker.gear);
    this.#budget = new ByteBudget(init.budget);
    this.#readBytes = init.readBytes ?? 1024 * 1024;
    this.#buf = Buffer.allocUnsafeSlow(init.chunker.params.max + this.#readBytes);
    this.known = init.known ?? null;
  }

  async run(task: BackupFilesTask, ctx: TaskContext): Promise<null> {
    this.#ctx = ctx;
    try {
      for (let i = 0; i < task.paths.length; i++) {
        const done = await this.#readFile(i, task.paths[i]!, task.sizes[i] ?? -1); // (not inlined: #post may replace #done meanwhile)
        this.#done.push(done);
        if (this.#done.length >= PART_FILES) this.#post();
      }
      this.#post();
    } finally {
      this.#ctx = null;
    }
    return null;
  }

  async #readFile(index: number, path: string, listedSize: number): Promise<FileDone> {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      return { file: index, size: 0, after: null, error: `cannot open: ${errCode(err)}` };
    }
    const buf = this.#buf;
    const max = this.#chunker.params.max;
    let total = 0;
    try {
      let start = 0;
      let end = 0;
      let read = 0;
      let eof = false;
      for (;;) {
        while (!eof && end - start < max) {
          if (end === buf.length) {
            buf.copy(buf, 0, start, end);
            end -= start;
            start = 0;
          }
          const want = Math.min(buf.length - end, this.#readBytes);
          const n = readSync(fd, buf, end, want, null);
          end += n;
          read += n;
          // A short read that reaches the listed size is the end (saves a read per small file); a
          // file that grew meanwhile shows in the fstat below, and is reported as changed.
          if (n === 0 || (n < want && read === listedSize)) eof = true;
        }
        if (start === end) break;
        const n = this.#chunker.cut(buf, start, end, eof);
        await this.#chunk(index, buf.subarray(start, start + n));
        start += n;
        total += n;
      }
      const st = fstatSync(fd, { bigint: true });
      return { file: index, size: total, after: { size: st.size, mtimeNs: st.mtimeNs, ino: st.ino }, error: null };
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      return { file: index, size: total, after: null, error: `read failed: ${errCode(err)}` };
    } finally {
      closeSync(fd);
    }
  }

  async #chunk(file: number, data: Buffer): Promise<void> {
    const id = blobId(this.#idKey, data);
    let body = -1;
    let comp = 0;
    if (!this.known || !sharedHas(this.known, id)) {
      // Sealed at once: the LZ4 payload lives in this thread's scratch buffer until the next
      // compressBlob (on the main thread, in tests, that may be another "worker's" after an await).
      const { payload, compression } = compressBlob(data);
      const length = payload.length + SEAL_OVERHEAD;
      const sealed = sealParts(this.#encKey, payload, id);
      await this.#budget.acquire(length, () => this.#post());
      body = this.#bodies.length;
      const own = sealed.body.byteOffset === 0 && sealed.body.byteLength === sealed.body.buffer.byteLength;
      this.#bodies.push(own ? sealed.body : Buffer.from(new Uint8Array(sealed.body))); // transferred: must own its memory
      this.#nonceTags.push(sealed.nonce, sealed.tag);
      this.#acquired += length;
      comp = compression;
      if (this.#garbage.add(length)) await this.#garbage.release();
    }
    this.#file.push(file);
    this.#raw.push(data.length);
    this.#comp.push(comp);
    this.#ids.push(id);
    this.#body.push(body);
    if (this.#acquired >= PART_BYTES || this.#file.length >= PART_CHUNKS) this.#post();
  }

  /** Posts what was gathered since the last post (nothing if nothing was). */
  #post(): void {
    if (this.#file.length === 0 && this.#done.length === 0) return;
    const bodies = this.#bodies;
    const part: BackupPart = {
      file: Int32Array.from(this.#file),
      raw: Int32Array.from(this.#raw),
      comp: Uint8Array.from(this.#comp),
      ids: Buffer.concat(this.#ids),
      body: Int32Array.from(this.#body),
      bodies,
      nonceTags: Buffer.concat(this.#nonceTags),
      budget: this.#acquired,
      done: this.#done,
    };
    this.#file = [];
    this.#raw = [];
    this.#comp = [];
    this.#ids = [];
    this.#body = [];
    this.#bodies = [];
    this.#nonceTags = [];
    this.#acquired = 0;
    this.#done = [];
    this.#ctx!.post(part, bodies.map((b) => b.buffer as ArrayBuffer));
  }
}

// --- restore ---

/** Ownership, mode and time to give a restored file (or directory, or symlink). */
export interface Meta {
  uid: number;
  gid: number;
  mode: number;
  mtimeNs: string;
  /** chown too (only when restoring ownership, and the file did not get this owner when it was made). */
  chown: boolean;
  /** The file was created with exactly `mode` (restore.ts createsExactly, RestoreTarget.newFiles): no chmod. */
  modeSet?: boolean;
}

/** The mode to create a restored file with: its own when `meta` says it comes out exact, else private. */
function createMode(meta: Meta | undefined): number {
  return meta?.modeSet ? meta.mode : 0o600;
}

export interface BlobUse {
  /** The file's temporary path. */
  path: string;
  offset: number;
  /** The file's only write: create it (exclusively), write, set `meta`, close. Otherwise it exists already, pre-sized. */
  whole: boolean;
  meta?: Meta;
  /** The file's final path, for messages. */
  final: string;
}

/**
 * Where a task's pack bytes come from: `data` (read by the main thread, transferred), or `file`, a
 * pack in a directory pool that the worker reads itself: `reads` are the ranges of it to read, one
 * after the other (so `data` is their concatenation), or the whole file when `reads` is absent.
 */
export interface PackSource {
  data?: Uint8Array;
  file?: string;
  /** The pack's object key, for messages ("not found: packs/…"). */
  key?: string;
  reads?: { offset: number; length: number }[];
}

export interface RestorePackTask extends PackSource {
  packId: string;
  /** Blob i is at `offsets[i]` in the pack bytes (see PackSource). */
  offsets: number[];
  lengths: number[];
  rawLengths: number[];
  compressions: number[];
  /** 32 bytes per blob. */
  ids: Uint8Array;
  uses: BlobUse[][];
}

export interface RestoreResultPart {
  bytes: number;
  warnings: string[];
}

/**
 * Blobs to read from pack files of a directory pool, authenticate, decompress and verify (restore's
 * trees). Given sorted by file and offset: each file is opened once.
 */
export interface ReadBlobsTask {
  files: string[];
  /** Blob i is in `files[file[i]]`, at `offsets[i]`, `lengths[i]` bytes. */
  file: number[];
  offsets: number[];
  lengths: number[];
  rawLengths: number[];
  compressions: number[];
  /** 32 bytes per blob. */
  ids: Uint8Array;
}

export interface ReadBlobsResult {
  /** The plaintexts back to back: blob i is `data[ends[i - 1] ?? 0, ends[i])`. */
  data: Uint8Array;
  ends: number[];
  /** Blobs that could not be read or failed verification (empty in `data`): the caller reads them again to report why. */
  failed: number[];
}

/** This thread's meter for the decoded blobs of restores and checks. */
const decoded = new GarbageMeter();

/** A worker's buffer for the packs it reads itself (grown as needed, reused by its tasks, which run one at a time). */
interface Scratch {
  buf: Buffer | null;
}

/** The bytes a task works on: transferred, or read from the pool directory into the worker's buffer. */
function packBytes(task: PackSource, scratch: Scratch): Buffer {
  if (task.data) {
    const bytes = Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength);
    decoded.add(bytes.length); // dead after this task
    return bytes;
  }
  const key = task.key ?? task.file!;
  let fd: number;
  try {
    fd = openSync(task.file!, 'r');
  } catch (err) {
    throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? new NotFoundError(key, { cause: err }) : err;
  }
  try {
    const reads = task.reads ?? [{ offset: 0, length: Number(fstatSync(fd).size) }];
    const total = reads.reduce((a, r) => a + r.length, 0);
    const buf = scratchOf(scratch, total);
    let at = 0;
    for (const r of reads) {
      readRange(fd, buf, at, r.offset, r.length, key);
      at += r.length;
    }
    return buf.subarray(0, total);
  } finally {
    closeSync(fd);
  }
}

/** The worker's scratch buffer, grown (at least doubled) to hold `bytes`. */
function scratchOf(scratch: Scratch, bytes: number): Buffer {
  if (!scratch.buf || scratch.buf.length < bytes) scratch.buf = Buffer.allocUnsafeSlow(Math.max(bytes, scratch.buf ? scratch.buf.length * 2 : 0, 1024 * 1024));
  return scratch.buf;
}

/** Reads `length` bytes at `offset` of the open file into `buf` at `at`; a file that ends first is an error naming `what`. */
function readRange(fd: number, buf: Buffer, at: number, offset: number, length: number, what: string): void {
  for (let done = 0; done < length; ) {
    const n = readSync(fd, buf, at + done, length - done, offset + done);
    if (n === 0) throw new RangeError(`range ${offset}+${length} outside ${what}`);
    done += n;
  }
}

function readBlobs(keys: { encKey: Buffer; idKey: Buffer }, task: ReadBlobsTask, scratch: Scratch): ReadBlobsResult {
  const plains: Uint8Array[] = [];
  const ends: number[] = [];
  const failed: number[] = [];
  let total = 0;
  let fd = -1;
  let open = -1;
  try {
    for (let i = 0; i < task.file.length; i++) {
      let plain: Uint8Array = new Uint8Array(0);
      try {
        if (task.file[i] !== open) {
          if (fd >= 0) closeSync(fd);
          fd = -1;
          open = task.file[i]!;
          fd = openSync(task.files[open]!, 'r');
        }
        const length = task.lengths[i]!;
        const buf = scratchOf(scratch, length);
        readRange(fd, buf, 0, task.offsets[i]!, length, task.files[open]!);
        const id = Buffer.from(task.ids.buffer, task.ids.byteOffset + 32 * i, 32);
        // (Not transient: the plaintext must outlive the next blob's.)
        plain = decodeBlob(keys, { id, compression: task.compressions[i] as Compression, rawLength: task.rawLengths[i]! }, buf.subarray(0, length), { verifyId: true });
      } catch {
        failed.push(i);
      }
      plains.push(plain);
      total += plain.length;
      ends.push(total);
    }
  } finally {
    if (fd >= 0) closeSync(fd);
  }
  const data = new Uint8Array(total);
  let at = 0;
  for (const p of plains) {
    data.set(p, at);
    at += p.length;
  }
  return { data, ends, failed };
}

async function restorePack(keys: { encKey: Buffer; idKey: Buffer }, task: RestorePackTask, scratch: Scratch): Promise<RestoreResultPart> {
  const data = packBytes(task, scratch);
  const ids = Buffer.from(task.ids.buffer, task.ids.byteOffset, task.ids.byteLength);
  const warnings: string[] = [];
  const fds = new Map<string, number>();
  let bytes = 0;
  try {
    for (let i = 0; i < task.offsets.length; i++) {
      const id = ids.subarray(i * 32, i * 32 + 32);
      const sealed = data.subarray(task.offsets[i]!, task.offsets[i]! + task.lengths[i]!);
      const plain = decodeBlob(keys, { id, compression: task.compressions[i] as Compression, rawLength: task.rawLengths[i]! }, sealed, {
        verifyId: true,
        what: `blob ${id.toString('hex').slice(0, 16)} in pack ${task.packId.slice(0, 12)}`,
      });
      for (const use of task.uses[i]!) {
        if (use.whole) {
          const fd = openSync(use.path, 'wx', createMode(use.meta));
          try {
            writeAll(fd, plain, 0);
            if (use.meta) applyMetaFd(fd, use.meta, use.final, warnings);
          } finally {
            closeSync(fd);
          }
        } else {
          let fd = fds.get(use.path);
          if (fd === undefined) fds.set(use.path, (fd = openSync(use.path, constants.O_RDWR | constants.O_NOFOLLOW)));
          writeAll(fd, plain, use.offset);
        }
        bytes += plain.length;
      }
      if (decoded.add(plain.length + sealed.length)) await decoded.release();
    }
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
  return { bytes, warnings };
}

function writeAll(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, position + done);
}

export interface FileOp {
  /** create: make an empty file at `path` (exclusively), or pre-size it to `size`. */
  op: 'create' | 'finish' | 'meta' | 'dirmeta';
  path: string;
  size?: number;
  /** create: the mode to create it with (restore.ts: the file's own when that comes out exact); 0600 by default. */
  mode?: number;
  /**
   * finish: rename `path` to `final` (after applying `meta`, if any). meta: apply `meta` to `path`.
   * dirmeta: apply `meta` to the directory `path` (never through a symlink; `final` names it in messages).
   */
  final?: string;
  meta?: Meta;
  /** meta: `path` is a symlink (no chmod, l-variants). */
  link?: boolean;
}

function fileOps(ops: FileOp[]): { warnings: string[] } {
  const warnings: string[] = [];
  for (const o of ops) {
    if (o.op === 'create') {
      const fd = openSync(o.path, 'wx', o.mode ?? 0o600);
      try {
        if (o.size) ftruncateSync(fd, o.size);
        if (o.meta) applyMetaFd(fd, o.meta, o.final ?? o.path, warnings);
      } finally {
        closeSync(fd);
      }
    } else if (o.op === 'finish') {
      if (o.meta) applyMetaPath(o.path, o.meta, false, o.final!, warnings);
      renameSync(o.path, o.final!);
    } else if (o.op === 'dirmeta') {
      applyDirMeta(o.path, o.meta!, o.final ?? o.path, warnings);
    } else {
      applyMetaPath(o.path, o.meta!, o.link ?? false, o.path, warnings);
    }
  }
  return { warnings };
}

function applyMetaFd(fd: number, meta: Meta, shown: string, warnings: string[]): void {
  const t = utimeSeconds(meta.mtimeNs);
  try {
    if (meta.chown) fchownSync(fd, meta.uid, meta.gid);
    if (!meta.modeSet) fchmodSync(fd, meta.mode);
    futimesSync(fd, t, t);
  } catch (err) {
    warnings.push(`${shown}: could not restore metadata: ${(err as Error).message}`);
  }
}

/** A directory's metadata, through a descriptor opened O_NOFOLLOW: a directory swapped for a symlink is refused. */
function applyDirMeta(path: string, meta: Meta, shown: string, warnings: string[]): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') throw unsafe(shown, 'is no longer a directory (replaced by a symlink?)', err);
    throw err;
  }
  try {
    applyMetaFd(fd, meta, shown, warnings);
  } finally {
    closeSync(fd);
  }
}

function applyMetaPath(path: string, meta: Meta, link: boolean, shown: string, warnings: string[]): void {
  if (!link) {
    // Through a descriptor opened without following a symlink: a name swapped for a link is refused, not followed.
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw err; // swapped for a symlink: never followed
      warnings.push(`${shown}: could not restore metadata: ${(err as Error).message}`);
      return;
    }
    try {
      return applyMetaFd(fd, meta, shown, warnings);
    } finally {
      closeSync(fd);
    }
  }
  const t = utimeSeconds(meta.mtimeNs);
  try {
    if (meta.chown) lchownSync(path, meta.uid, meta.gid);
    lutimesSync(path, t, t);
  } catch (err) {
    warnings.push(`${shown}: could not restore metadata: ${(err as Error).message}`);
  }
}

// --- check ---

export interface CheckPackTask extends PackSource {
  packId: string;
  /** The index's entries for the pack, as stored (pack.ts's entry format): the pack's header must hold the same. */
  entries: Uint8Array;
}

export interface CheckPackResult {
  /** Bytes of the pack read. */
  read: number;
  /** Set when the pack cannot be trusted at all (header damaged or not matching the index). */
  whole: string | null;
  /** Blobs that fail (the others are sound). */
  blobs: { id: string; message: string }[];
  /** The plaintext of every sound tree blob, so the check need not read trees again. */
  trees: { id: string; data: Uint8Array }[];
}

async function checkPack(keys: { encKey: Buffer; idKey: Buffer }, task: CheckPackTask, scratch: Scratch): Promise<CheckPackResult> {
  let data: Buffer;
  try {
    data = packBytes(task, scratch);
  } catch (err) {
    return { whole: `cannot be read: ${(err as Error).message}`, blobs: [], trees: [], read: 0 };
  }
  let entries: PackEntry[];
  try {
    const what = `pack ${task.packId.slice(0, 12)}`;
    const header = openPackHeader(keys.encKey, Buffer.from(task.packId, 'hex'), data, what);
    entries = decodeEntries(header.entries, header.dataLength, what);
    if (!header.entries.equals(task.entries)) return { whole: 'its header does not match the index', blobs: [], trees: [], read: data.length };
  } catch (err) {
    return { whole: (err as Error).message, blobs: [], trees: [], read: data.length };
  }
  const blobs: { id: string; message: string }[] = [];
  const trees: { id: string; data: Uint8Array }[] = [];
  for (const e of entries) {
    try {
      const tree = e.type === BlobType.Tree;
      const plain = decodeBlob(keys, e, data.subarray(e.offset, e.offset + e.length), {
        verifyId: true,
        what: `blob ${e.id.toString('hex').slice(0, 16)} in pack ${task.packId.slice(0, 12)}`,
        transient: !tree, // only hashed
      });
      if (tree) trees.push({ id: e.id.toString('hex'), data: plain });
      if (decoded.add(e.length + (tree || e.compression === Compression.None ? plain.length : 0))) await decoded.release();
    } catch (err) {
      blobs.push({ id: e.id.toString('hex'), message: (err as Error).message });
    }
  }
  return { whole: null, blobs, trees, read: data.length };
}

// --- the handler module ---

export function createHandlers(init: WorkerInit): WorkerHandlers {
  const keys = { encKey: Buffer.from(init.encKey), idKey: Buffer.from(init.idKey) };
  const backup = init.budget ? new BackupWorker(init) : null;
  const scratch: Scratch = { buf: null };
  return {
    run(kind, task, ctx) {
      switch (kind) {
        case 'backup-files':
          if (!backup) throw new Error('this worker was not started for backups');
          return backup.run(task as BackupFilesTask, ctx);
        case 'restore-pack':
          return restorePack(keys, task as RestorePackTask, scratch);
        case 'file-ops':
          return fileOps(task as FileOp[]);
        case 'check-pack':
          return checkPack(keys, task as CheckPackTask, scratch);
        case 'read-blobs':
          return readBlobs(keys, task as ReadBlobsTask, scratch);
        default:
          throw new Error(`unknown pipeline task ${JSON.stringify(kind)}`);
      }
    },
    control(data) {
      const d = data as { known?: SharedIdTable };
      if (d.known && backup) {
        const old = backup.known?.slots;
        backup.known = d.known;
        releaseReplacedTable(old);
      }
    },
  };
}

function errCode(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code} (${e.message.replace(/^[A-Z]+: /, '')})` : String((err as Error).message ?? err);
}
