// The messages between the main thread and a pipeline worker, and how errors cross the boundary.
//
//   main → worker   { t: 'init', init }                a spare worker's init (sent once; see below)
//                   { t: 'task', id, kind, task }      run handler `kind` on `task` (tasks run one at a time, in order)
//                   { t: 'control', data }             applied at once, between two steps of the running task
//   worker → main   { t: 'ready' }                     the handlers are loaded; tasks may follow
//                   { t: 'part', id, data }            a partial result of task `id` (any number, in order)
//                   { t: 'done', id, data }            task `id` finished; nothing more comes for it
//                   { t: 'error', id, error }          task `id` failed; the worker goes on with the next
//                   { t: 'fatal', error }              the worker cannot go on (its handlers failed to load)
//
// A worker is started with `workerData = { init }`, or, as a spare started before its job knows the
// init (the keys wait on the passphrase's scrypt), with `workerData = { deferred: true }` and the init
// message later; the handler module's `createHandlers(init)` makes its handlers, and only then does the
// worker say `ready`.
import type { TransferListItem } from 'node:worker_threads';
import { IntegrityError, NotFoundError, StrataError, type ErrorKind } from '../../errors.js';

export type ToWorker = { t: 'init'; init: unknown } | { t: 'task'; id: number; kind: string; task: unknown } | { t: 'control'; data: unknown };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'part'; id: number; data: unknown }
  | { t: 'done'; id: number; data: unknown }
  | { t: 'error'; id: number; error: SerializedError }
  | { t: 'fatal'; error: SerializedError };

/** What a task handler may do besides returning its result. */
export interface TaskContext {
  /** Sends a partial result to the main thread (delivered, in order, before the final one). */
  post(data: unknown, transfer?: TransferListItem[]): void;
}

export interface WorkerHandlers {
  run(kind: string, task: unknown, ctx: TaskContext): Promise<unknown> | unknown;
  control?(data: unknown): void;
}

export interface HandlerModule {
  createHandlers(init: unknown): WorkerHandlers | Promise<WorkerHandlers>;
}

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  kind?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  key?: string;
}

export function serializeError(err: unknown): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as Error & Partial<SerializedError>;
  const out: SerializedError = { name: e.name, message: e.message };
  if (e.stack !== undefined) out.stack = e.stack;
  for (const k of ['code', 'kind', 'syscall', 'path', 'key'] as const) if (typeof e[k] === 'string') out[k] = e[k];
  if (typeof e.errno === 'number') out.errno = e.errno;
  return out;
}

/** Rebuilds an error from a worker: strata's typed errors keep their class, code and kind; system errors their code. */
export function deserializeError(s: SerializedError): Error {
  let err: Error;
  if (s.name === 'IntegrityError') err = new IntegrityError(s.message);
  else if (s.name === 'NotFoundError' && s.key !== undefined) err = new NotFoundError(s.key);
  else if (s.code !== undefined && s.code.startsWith('STRATA_')) err = new StrataError(s.code, s.message, { kind: (s.kind ?? 'failed') as ErrorKind });
  else {
    err = new Error(s.message);
    err.name = s.name;
    const e = err as Error & Partial<SerializedError>;
    for (const k of ['code', 'syscall', 'path'] as const) if (s[k] !== undefined) e[k] = s[k];
    if (s.errno !== undefined) e.errno = s.errno;
  }
  if (s.stack) err.stack = `${err.name}: ${err.message}\n    at (worker thread)\n${s.stack.split('\n').slice(1).join('\n')}`;
  return err;
}

/**
 * `buf` as something that can be transferred to another thread without copying its bytes: itself when
 * it owns its whole ArrayBuffer, else a copy. The caller must not touch `buf` after transferring.
 */
export function transferable(buf: Uint8Array): { data: Uint8Array; transfer: ArrayBuffer[] } {
  const ab = buf.buffer;
  if (ab instanceof ArrayBuffer && buf.byteOffset === 0 && buf.byteLength === ab.byteLength) return { data: buf, transfer: [ab] };
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return { data: copy, transfer: [copy.buffer] };
}
