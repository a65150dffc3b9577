// Prompt release of the buffers a worker allocates per blob (cipher outputs and decoded blobs, up to
// a MiB or so each). Buffers whose memory lives outside V8's heap are freed only when V8 collects
// their handles, and a worker that works for seconds without yielding grows by every such byte
// (measured with lz4-napi's outputs, before LZ4 wrote into scratch buffers: +480 MiB for 1500 MiB of
// text). A young-generation collection, then one turn of the event loop, every few MiB keeps it flat.
import v8 from 'node:v8';
import vm from 'node:vm';

type GcFunction = (options?: { type?: 'minor' | 'major' }) => void;
let gc: GcFunction | null | undefined;

function collector(): GcFunction | null {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('gc') as GcFunction;
    } catch {
      gc = null;
    }
  }
  return gc;
}

/** Runs a young-generation collection on this thread (no-op where the collector cannot be reached). */
export function collectYoung(): void {
  collector()?.({ type: 'minor' });
}

/** Runs a full collection on this thread (no-op where the collector cannot be reached). */
export function collectAll(): void {
  collector()?.();
}

/**
 * A dedup table (a SharedArrayBuffer) this large or larger is freed at once when it is replaced.
 * Its memory is released only when every thread that held it has collected its handle, and a handle
 * that lived a while sits in the old generation, which these threads rarely collect in full: measured
 * on an 8 GiB first backup, the tables outgrown on the way (~24 MiB) were all still resident at the
 * end, +25 MiB of peak RSS. Smaller tables are not worth a full collection.
 */
export const RELEASE_TABLE_BYTES = 2 * 1024 * 1024;

/** After `old` (a dedup table's slots) was replaced: a full collection if it was large, so its memory goes back now. */
export function releaseReplacedTable(old: { byteLength: number } | null | undefined): void {
  if (old && old.byteLength >= RELEASE_TABLE_BYTES) collectAll();
}

/**
 * Keeps the main thread's heap near its live size during a long job. Objects that live across a few
 * young-generation collections (a file's state while it is in the pipeline) die in the old
 * generation, and V8 lets that grow to several times the live size before collecting it (measured:
 * 130 MiB of heap for ~40 MiB live during a 2 GiB backup). `check()` is cheap; when the heap has grown
 * by `slack` past what was live after the last full collection, it runs one (each costs a few ms).
 */
export class HeapGuard {
  readonly #slack: number;
  #live = 0;
  #collections = 0;

  constructor(slack = 32 * 1024 * 1024) {
    this.#slack = slack;
  }

  /** Full collections run so far. */
  get collections(): number {
    return this.#collections;
  }

  check(): void {
    const used = v8.getHeapStatistics().used_heap_size;
    if (used < this.#live + this.#slack) return;
    const gc = collector();
    if (!gc) return;
    // Plain gc(): a full collection. (gc({ type: 'major' }) in this V8 leaves most of the garbage:
    // measured 93 → 88 MiB where gc() gives 81 → 36 MiB.)
    gc();
    this.#collections++;
    this.#live = v8.getHeapStatistics().used_heap_size;
  }
}

/** Counts bytes of short-lived buffers; every `every` bytes, collects and yields so their memory is freed. */
export class GarbageMeter {
  readonly #every: number;
  #bytes = 0;

  constructor(every = 8 * 1024 * 1024) {
    this.#every = every;
  }

  /** True when the caller should `await release()`. */
  add(bytes: number): boolean {
    this.#bytes += bytes;
    return this.#bytes >= this.#every;
  }

  async release(): Promise<void> {
    this.#bytes = 0;
    collectYoung();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
