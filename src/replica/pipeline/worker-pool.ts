// A fixed set of pipeline workers (node:worker_threads) speaking protocol.ts: the caller picks the
// worker for each task (so a worker's state, e.g. its byte budget, can be tied to its tasks), tasks on
// one worker run in order, partial results stream back through a callback, and one failure or one
// abort ends every worker.
//
// Without a worker script (source run under a test runner, where the TypeScript entry cannot be
// started as a thread) the same handlers are served in-process over a MessageChannel: same protocol,
// same cloning and transfer semantics, no parallelism.
import { MessageChannel, Worker, type MessagePort, type TransferListItem } from 'node:worker_threads';
import { deserializeError, type FromWorker, type HandlerModule, type ToWorker } from './protocol.js';
import { serve } from './serve.js';

export interface WorkerPoolOptions {
  size: number;
  /** Data each worker is started with (cloned; SharedArrayBuffers are shared, not copied). */
  init: (index: number) => unknown;
  /** Thread mode: the script each thread runs (it must serve protocol.ts, as worker.ts does). */
  script?: URL | string;
  /** With `script`: it is source text, not a path. */
  eval?: boolean;
  /** In-process mode, used when `script` is absent: the handler module to serve on this thread. */
  load?: () => Promise<HandlerModule>;
  /** Aborting it fails every pending task with its reason and ends the workers. */
  signal?: AbortSignal;
}

export interface RunOptions {
  transfer?: TransferListItem[];
  /** Called on the main thread for each partial result, in order, before the task settles. */
  onPart?: (data: unknown) => void;
}

/** A pool whose workers are booting: tasks may be run on `pool` already; `ready` settles once all are up (WorkerPool.launch). */
export interface LaunchedPool {
  pool: WorkerPool;
  ready: Promise<WorkerPool>;
}

/** The error pending and later tasks fail with once the pool is closed. */
export class PoolClosedError extends Error {
  constructor() {
    super('worker pool closed');
    this.name = 'PoolClosedError';
  }
}

interface Endpoint {
  post(msg: ToWorker, transfer?: TransferListItem[]): void;
  /** Ends the worker; resolves once it has. */
  end(): Promise<void>;
}

interface Pending {
  worker: number;
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
  onPart?: ((data: unknown) => void) | undefined;
}

export class WorkerPool {
  readonly size: number;
  readonly inProcess: boolean;
  readonly #endpoints: Endpoint[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #load: number[];
  #nextId = 1;
  #error: { err: unknown } | null = null;
  #ended: Promise<void> | null = null;
  #signal: AbortSignal | undefined;
  #rejectFailed: (err: unknown) => void = () => {};
  readonly #failed = new Promise<never>((_, reject) => {
    this.#rejectFailed = reject;
  });
  #onAbort = () => this.#fail(this.#signal?.reason ?? new Error('aborted'));

  private constructor(size: number, inProcess: boolean) {
    this.size = size;
    this.inProcess = inProcess;
    this.#load = new Array<number>(size).fill(0);
    this.#failed.catch(() => {});
  }

  /** Starts `size` workers and waits until each has loaded its handlers. */
  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    return WorkerPool.launch(options).ready;
  }

  /**
   * Starts `size` workers without waiting: tasks may be run on `pool` at once (a worker takes them
   * as soon as it has loaded its handlers, with no round trip through this thread, which may be busy
   * by then); `ready` resolves with the pool once every worker is up, or rejects (the pool closed).
   */
  static launch(options: WorkerPoolOptions): LaunchedPool {
    if (options.signal?.aborted) {
      const pool = new WorkerPool(Math.max(1, Math.floor(options.size)), !options.script);
      pool.#fail(options.signal.reason);
      const ready = Promise.reject(options.signal.reason as unknown);
      ready.catch(() => {});
      return { pool, ready };
    }
    const launched = WorkerPool.#boot(options, options.init);
    launched.pool.#watch(options.signal);
    return launched;
  }

  /**
   * Starts `size` workers that load their handler module and then wait for their init: spares, started
   * before the job that uses them knows what to give them (the keys wait on the passphrase's scrypt, and
   * a thread takes ~0.2 s to boot). `SpareWorkers.start` gives the init; `close` ends spares never started.
   */
  static spare(options: Omit<WorkerPoolOptions, 'init' | 'signal'>): SpareWorkers {
    const launched = WorkerPool.#boot(options, null);
    return new SpareWorkers(launched, (init, signal) => {
      launched.pool.#init(init);
      launched.pool.#watch(signal);
    });
  }

  /** The threads (or in-process endpoints) of a pool, each given `init(i)`, or left waiting for it (null). */
  static #boot(options: Omit<WorkerPoolOptions, 'init' | 'signal'>, init: WorkerPoolOptions['init'] | null): LaunchedPool {
    const size = Math.max(1, Math.floor(options.size));
    if (!options.script && !options.load) throw new Error('a worker pool needs a script or a handler module');
    const pool = new WorkerPool(size, !options.script);
    const ready: Promise<void>[] = [];
    for (let i = 0; i < size; i++) {
      let onReady!: () => void;
      let onFail!: (err: unknown) => void;
      ready.push(
        new Promise<void>((resolve, reject) => {
          onReady = resolve;
          onFail = reject;
        }),
      );
      const onMessage = (msg: FromWorker) => {
        if (msg.t === 'ready') onReady();
        else if (msg.t === 'fatal') {
          const err = deserializeError(msg.error);
          onFail(err);
          pool.#fail(err);
        } else pool.#onMessage(msg);
      };
      const onCrash = (err: unknown) => {
        onFail(err);
        pool.#fail(err);
      };
      const given = init ? { init: init(i) } : { deferred: true as const };
      pool.#endpoints.push(options.script ? threadEndpoint(options, given, i, onMessage, onCrash) : inlineEndpoint(options, given, onMessage));
    }
    const started = Promise.race([Promise.all(ready), pool.#failed]).then(
      () => pool,
      async (err: unknown) => {
        await pool.close();
        throw err;
      },
    );
    started.catch(() => {}); // reported to whoever awaits `ready`
    return { pool, ready: started };
  }

  /** Gives spare workers their init (once). */
  #init(init: (index: number) => unknown): void {
    if (this.#error) return;
    this.#endpoints.forEach((e, i) => e.post({ t: 'init', init: init(i) }));
  }

  /** Aborting `signal` from now on fails the pool (at once if it is aborted already). */
  #watch(signal: AbortSignal | undefined): void {
    if (!signal) return;
    if (signal.aborted) return this.#fail(signal.reason);
    this.#signal = signal;
    signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Tasks sent to worker `i` and not settled yet. */
  load(i: number): number {
    return this.#load[i]!;
  }

  /** The worker with the fewest unsettled tasks (the lowest index among equals). */
  leastBusy(): number {
    let best = 0;
    for (let i = 1; i < this.size; i++) if (this.#load[i]! < this.#load[best]!) best = i;
    return best;
  }

  /** Set once the pool has failed or closed: the reason every later task fails with. */
  get error(): unknown {
    return this.#error?.err;
  }

  /**
   * Runs handler `kind` on worker `worker`. Resolves with the handler's result; rejects with its error
   * (rebuilt on this thread, class and code kept), or with the pool's error if the pool fails first.
   */
  run<R = unknown>(worker: number, kind: string, task: unknown, options: RunOptions = {}): Promise<R> {
    if (this.#error) return Promise.reject(this.#error.err);
    if (!(worker >= 0 && worker < this.size)) return Promise.reject(new RangeError(`no worker ${worker}`));
    const id = this.#nextId++;
    return new Promise<R>((resolve, reject) => {
      this.#pending.set(id, { worker, resolve: resolve as (v: unknown) => void, reject, onPart: options.onPart });
      this.#load[worker]!++;
      try {
        this.#endpoints[worker]!.post({ t: 'task', id, kind, task }, options.transfer);
      } catch (err) {
        this.#settle(id)?.reject(err);
      }
    });
  }

  /** Sends a control message to one worker, or to all. */
  control(data: unknown, worker?: number): void {
    if (this.#error) return;
    for (let i = 0; i < this.size; i++) if (worker === undefined || worker === i) this.#endpoints[i]!.post({ t: 'control', data });
  }

  /** Ends every worker; tasks not settled yet fail with PoolClosedError. Idempotent; resolves once all have ended. */
  close(): Promise<void> {
    this.#fail(new PoolClosedError());
    return this.#ended!;
  }

  #onMessage(msg: FromWorker): void {
    if (msg.t === 'part') {
      const p = this.#pending.get(msg.id);
      if (!p?.onPart) return;
      try {
        p.onPart(msg.data);
      } catch (err) {
        this.#fail(err);
      }
    } else if (msg.t === 'done') this.#settle(msg.id)?.resolve(msg.data);
    else if (msg.t === 'error') this.#settle(msg.id)?.reject(deserializeError(msg.error));
  }

  #settle(id: number): Pending | undefined {
    const p = this.#pending.get(id);
    if (!p) return undefined;
    this.#pending.delete(id);
    this.#load[p.worker]!--;
    return p;
  }

  #fail(err: unknown): void {
    if (this.#error) return;
    this.#error = { err };
    this.#signal?.removeEventListener('abort', this.#onAbort);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#load.fill(0);
    for (const p of pending) p.reject(err);
    this.#rejectFailed(err);
    this.#ended = Promise.all(this.#endpoints.map((e) => e.end().catch(() => {}))).then(() => {});
  }
}

/** What a worker is started with: its init, or word that the init message follows. */
type Given = { init: unknown } | { deferred: true };

function threadEndpoint(options: Omit<WorkerPoolOptions, 'init'>, given: Given, index: number, onMessage: (msg: FromWorker) => void, onCrash: (err: unknown) => void): Endpoint {
  // A small young generation: a worker's data lives in buffers outside the JS heap, its JS objects are
  // few and short-lived; V8's default (up to 3 × 16 MiB per thread) only adds to the process's RSS
  // (measured: peak RSS of a 2 GiB backup 361/364 → 323/341 MiB, same throughput).
  const worker = new Worker(options.script!, { eval: options.eval ?? false, workerData: given, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
  let ending = false;
  worker.on('message', onMessage);
  worker.on('error', (err) => onCrash(err));
  worker.on('exit', (code) => {
    if (!ending) onCrash(new Error(`pipeline worker ${index} exited unexpectedly (code ${code})`));
  });
  return {
    post: (msg, transfer) => worker.postMessage(msg, transfer),
    end: async () => {
      ending = true;
      await worker.terminate();
    },
  };
}

function inlineEndpoint(options: Omit<WorkerPoolOptions, 'init'>, given: Given, onMessage: (msg: FromWorker) => void): Endpoint {
  const { port1, port2 } = new MessageChannel();
  port1.on('message', onMessage);
  void serve(port2 as MessagePort, { ...given, load: options.load! });
  return {
    post: (msg, transfer) => port1.postMessage(msg, transfer),
    end: async () => {
      port1.close();
    },
  };
}

/**
 * Workers booting without their init (WorkerPool.spare): `start` gives it and hands out the pool, as
 * `WorkerPool.launch` would have; `close` ends them if they were never started. Either, once.
 */
export class SpareWorkers {
  readonly size: number;
  readonly inProcess: boolean;
  #launched: LaunchedPool | null;
  readonly #give: (init: (index: number) => unknown, signal: AbortSignal | undefined) => void;

  /** Made by WorkerPool.spare. */
  constructor(launched: LaunchedPool, give: (init: (index: number) => unknown, signal: AbortSignal | undefined) => void) {
    this.#launched = launched;
    this.#give = give;
    this.size = launched.pool.size;
    this.inProcess = launched.pool.inProcess;
  }

  /** Whether `start` or `close` may still be called. */
  get available(): boolean {
    return this.#launched !== null;
  }

  start(init: (index: number) => unknown, signal?: AbortSignal): LaunchedPool {
    const launched = this.#launched;
    if (!launched) throw new Error('these spare workers were started or closed already');
    this.#launched = null;
    this.#give(init, signal);
    return launched;
  }

  close(): Promise<void> {
    const launched = this.#launched;
    this.#launched = null;
    return launched ? launched.pool.close() : Promise.resolve();
  }
}
