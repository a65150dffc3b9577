// The main thread's side of the backup pipeline: hands files to the workers (many small files per
// task), consumes what they produce in order (dedup decision in the in-memory BlobIdSet, new blobs
// copied from the transferred ciphertexts into the open pack), and resolves each file's content ids
// in order.
//
//   walk ──submit──▶ [batches, ≤ maxQueuedBytes queued] ──▶ workers: read, chunk, hash; compress and
//   seal only chunks not already in the shared dedup table ──part messages, ciphertexts transferred──▶
//   consumer: BlobIdSet.add decides, Packer.add copies, budget released ──▶ file outcome
//
// Backpressure: `submit` waits while too many bytes or files are queued; a worker waits while its byte
// budget is spent; the consumer waits while the packer has too many pack writes in flight.
import type { BlobIdSet } from '../../catalog/blob-id-set.js';
import { NONCE_BYTES, SEAL_OVERHEAD } from '../../crypto/aead.js';
import { BlobType } from '../pack.js';
import type { Packer } from '../packer.js';
import type { ByteBudget } from './byte-budget.js';
import { collectYoung, HeapGuard, releaseReplacedTable } from './gc.js';
import type { BackupFilesTask, BackupPart, FileDone } from './tasks.js';
import type { WorkerPool } from './worker-pool.js';

export interface FileOutcome {
  /** Content blob ids (hex), in file order; empty when `error` is set. */
  content: string[];
  /** Bytes read. */
  size: number;
  after: FileDone['after'];
  error: string | null;
}

export interface BackupStageOptions {
  pool: WorkerPool;
  /** One per worker, the byte budget that worker was started with. */
  budgets: ByteBudget[];
  known: BlobIdSet;
  packer: Packer;
  /** Files smaller than this are batched, many to a task (the chunker's minimum: they are one chunk each). */
  smallFile: number;
  /** Bytes of files submitted and not finished, beyond which `submit` waits. Default 48 MiB per worker. */
  maxQueuedBytes?: number;
  /** Files submitted and not finished, beyond which `submit` waits. Default 4096. */
  maxQueuedFiles?: number;
  /** Called for each chunk consumed, in order per file; `isNew` when it was stored. */
  onChunk?: (rawLength: number, isNew: boolean) => void;
}

/** A task of small files holds up to this many files or bytes. */
const BATCH_FILES = 256;
const BATCH_BYTES = 4 * 1024 * 1024;
/** Ciphertexts consumed between two young-generation collections (see #consumePart). */
const BODY_GC_BYTES = 16 * 1024 * 1024;

interface FileState {
  size: number;
  cost: number;
  worker: number;
  content: string[];
  settled: boolean;
  resolve: (o: FileOutcome) => void;
  reject: (err: unknown) => void;
}

interface TaskState {
  worker: number;
  files: FileState[];
}

type InboxItem = { task: TaskState; part: BackupPart } | { task: TaskState; finished: true };

export class BackupStage {
  readonly #o: BackupStageOptions;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  readonly #workerBytes: number[];
  #queuedBytes = 0;
  #queuedFiles = 0;
  #batch: { paths: string[]; sizes: number[]; files: FileState[]; bytes: number } | null = null;
  #flushScheduled = false;
  #waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  #inbox: InboxItem[] = [];
  #inboxHead = 0;
  #consuming = false;
  #sentGeneration: number;
  /** The slots of the table the workers hold, to release when the set outgrows it. */
  #sentTable: Uint32Array | null = null;
  #error: { err: unknown } | null = null;
  #tasks = new Set<Promise<void>>();
  /** Tasks dispatched whose files are not all settled. */
  #live = new Set<TaskState>();
  // A full collection once the heap grows 12 MiB past its live size (32 MiB before: peak RSS of a 2 GiB
  // backup ~25 MiB lower, together with maxQueuedFiles 1024; same throughput, measured).
  readonly #heap = new HeapGuard(12 * 1024 * 1024);
  #parts = 0;
  /** Bytes of transferred ciphertexts consumed since the last young-generation collection. */
  #bodyBytes = 0;

  constructor(options: BackupStageOptions) {
    this.#o = options;
    this.#maxBytes = options.maxQueuedBytes ?? 48 * 1024 * 1024 * options.pool.size;
    // Each queued file holds its tree node, stat and promises on the main thread: 1024 (4 batches of
    // small files per worker) keeps the workers fed.
    this.#maxFiles = options.maxQueuedFiles ?? 1024;
    this.#workerBytes = new Array<number>(options.pool.size).fill(0);
    this.#sentGeneration = options.known.generation;
    this.#sentTable = options.known.table().slots;
  }

  /**
   * Queues a file (absolute path, size as listed) for reading. Resolves once it is queued (waiting
   * while the pipeline is full) with its outcome, which resolves once every chunk of it is consumed.
   * The outcome rejects only if the whole stage fails.
   */
  async submit(path: string, size: number): Promise<{ outcome: Promise<FileOutcome> }> {
    const cost = Math.min(Math.max(size, 1), this.#maxBytes);
    while (!this.#error && this.#queuedFiles > 0 && (this.#queuedBytes + cost > this.#maxBytes || this.#queuedFiles >= this.#maxFiles)) {
      await new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    }
    if (this.#error) throw this.#error.err;
    let file!: FileState;
    const outcome = new Promise<FileOutcome>((resolve, reject) => {
      file = { size, cost, worker: -1, content: [], settled: false, resolve, reject };
    });
    outcome.catch(() => {}); // the stage's failure is reported by whoever awaits it, once
    this.#queuedBytes += cost;
    this.#queuedFiles++;
    if (size < this.#o.smallFile) {
      const b = (this.#batch ??= { paths: [], sizes: [], files: [], bytes: 0 });
      b.paths.push(path);
      b.sizes.push(size);
      b.files.push(file);
      b.bytes += size;
      if (b.files.length >= BATCH_FILES || b.bytes >= BATCH_BYTES) this.flush();
      else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => {
          this.#flushScheduled = false;
          this.flush();
        });
      }
    } else {
      this.#dispatch({ paths: [path], sizes: [size] }, [file]);
    }
    return { outcome };
  }

  /** Dispatches the batch of small files gathered so far (called by itself soon after a submit; call it when the walk ends). */
  flush(): void {
    const b = this.#batch;
    this.#batch = null;
    if (b && !this.#error) this.#dispatch({ paths: b.paths, sizes: b.sizes }, b.files);
  }

  /** Fails every pending and later submit and outcome with `err`, and stops the workers' output. */
  fail(err: unknown): void {
    if (this.#error) return;
    this.#error = { err };
    for (const b of this.#o.budgets) b.abort();
    for (const w of this.#waiters.splice(0)) w.reject(err);
    this.#inbox = [];
    this.#inboxHead = 0;
    for (const t of this.#live) for (const f of t.files) this.#settle(f, null, err);
    this.#live.clear();
    const b = this.#batch;
    this.#batch = null;
    if (b) for (const f of b.files) this.#settle(f, null, err);
  }

  /** Resolves once every task dispatched so far has finished (outcomes are then all settled). */
  async idle(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    if (this.#error) throw this.#error.err;
  }

  #dispatch(task: BackupFilesTask, files: FileState[]): void {
    let worker = 0;
    for (let i = 1; i < this.#workerBytes.length; i++) if (this.#workerBytes[i]! < this.#workerBytes[worker]!) worker = i;
    for (const f of files) {
      f.worker = worker;
      this.#workerBytes[worker]! += f.cost;
    }
    const state: TaskState = { worker, files };
    this.#live.add(state);
    const run = this.#o.pool
      .run(worker, 'backup-files', task, { onPart: (part) => this.#enqueue({ task: state, part: part as BackupPart }) })
      .then(
        () => this.#enqueue({ task: state, finished: true }),
        (err: unknown) => this.fail(err),
      )
      .finally(() => this.#tasks.delete(run));
    this.#tasks.add(run);
  }

  #enqueue(item: InboxItem): void {
    if (this.#error) return;
    this.#inbox.push(item);
    if (!this.#consuming) void this.#consume();
  }

  async #consume(): Promise<void> {
    this.#consuming = true;
    try {
      while (this.#inboxHead < this.#inbox.length && !this.#error) {
        const item = this.#inbox[this.#inboxHead]!;
        this.#inbox[this.#inboxHead++] = undefined as never;
        if ('part' in item) await this.#consumePart(item.task, item.part);
        else {
          this.#live.delete(item.task);
          if (item.task.files.some((f) => !f.settled)) throw new Error('a pipeline worker finished a task without finishing all its files');
        }
      }
      this.#inbox = this.#inbox.slice(this.#inboxHead);
      this.#inboxHead = 0;
    } catch (err) {
      this.fail(err);
    } finally {
      this.#consuming = false;
    }
  }

  async #consumePart(task: TaskState, part: BackupPart): Promise<void> {
    const { known, packer, onChunk } = this.#o;
    const ids = Buffer.from(part.ids.buffer, part.ids.byteOffset, part.ids.byteLength);
    const nonceTags = Buffer.from(part.nonceTags.buffer, part.nonceTags.byteOffset, part.nonceTags.byteLength);
    for (let k = 0; k < part.file.length; k++) {
      const file = task.files[part.file[k]!]!;
      const id = ids.subarray(k * 32, k * 32 + 32);
      const raw = part.raw[k]!;
      const isNew = known.add(id);
      if (isNew) {
        const j = part.body[k]!;
        const body = part.bodies[j];
        if (j < 0 || !body) throw new Error('a pipeline worker skipped a chunk that is not in the dedup set');
        const nt = nonceTags.subarray(j * SEAL_OVERHEAD, (j + 1) * SEAL_OVERHEAD);
        await packer.add(BlobType.Data, id, [nt.subarray(0, NONCE_BYTES), body, nt.subarray(NONCE_BYTES)], raw, part.comp[k]!);
        this.#bodyBytes += body.length;
      }
      file.content.push(id.toString('hex'));
      onChunk?.(raw, isNew);
    }
    this.#o.budgets[task.worker]!.release(part.budget);
    if (known.generation !== this.#sentGeneration) {
      this.#sentGeneration = known.generation;
      const table = known.table();
      this.#o.pool.control({ known: table });
      releaseReplacedTable(this.#sentTable);
      this.#sentTable = table.slots;
    }
    for (const d of part.done) {
      const file = task.files[d.file]!;
      this.#settle(file, { content: d.error ? [] : file.content, size: d.size, after: d.after, error: d.error }, null);
    }
    // The ciphertexts are dead once packed; collect them now rather than when V8 gets to it (each
    // pack's worth would otherwise linger, tens of MiB of them).
    if (this.#bodyBytes >= BODY_GC_BYTES) {
      this.#bodyBytes = 0;
      collectYoung();
    }
    if (++this.#parts % 32 === 0) this.#heap.check();
  }

  #settle(file: FileState, outcome: FileOutcome | null, err: unknown): void {
    if (file.settled) return;
    file.settled = true;
    this.#queuedBytes -= file.cost;
    this.#queuedFiles--;
    if (file.worker >= 0) this.#workerBytes[file.worker]! -= file.cost;
    if (outcome) file.resolve(outcome);
    else file.reject(err);
    const w = this.#waiters.shift();
    if (w) w.resolve();
  }
}
