import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../errors.js';
import type { HandlerModule, TaskContext } from './protocol.js';
import { PoolClosedError, WorkerPool } from './worker-pool.js';

// A worker thread speaking protocol.ts, in plain JavaScript (the TypeScript entry cannot start as a
// thread under the test runner). Handlers: echo (after `ms`, with `parts` partial results first),
// fail (a typed error), crash (an uncaught exception), spin (busy forever), exit.
const THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const queue = [];
let running = false;
const handlers = {
  async echo(t, post) {
    for (let i = 0; i < (t.parts || 0); i++) post({ part: i, of: t.value });
    await new Promise((r) => setTimeout(r, t.ms || 0));
    return { value: t.value, init: workerData.init };
  },
  fail() { const e = new Error('blob 1234 failed authentication'); e.name = 'IntegrityError'; e.code = 'STRATA_INTEGRITY'; e.kind = 'input'; throw e; },
  crash() { setImmediate(() => { throw new Error('worker blew up'); }); return new Promise(() => {}); },
  spin() { for (;;) {} },
  exit() { process.exit(7); },
};
async function pump() {
  if (running) return;
  running = true;
  while (queue.length) {
    const m = queue.shift();
    try {
      const data = await handlers[m.kind](m.task, (d) => parentPort.postMessage({ t: 'part', id: m.id, data: d }));
      parentPort.postMessage({ t: 'done', id: m.id, data });
    } catch (e) {
      parentPort.postMessage({ t: 'error', id: m.id, error: { name: e.name, message: e.message, code: e.code, kind: e.kind } });
    }
  }
  running = false;
}
parentPort.on('message', (m) => { if (m.t === 'task') { queue.push(m); pump(); } });
parentPort.postMessage({ t: 'ready' });
`;

function threads(size: number, signal?: AbortSignal): Promise<WorkerPool> {
  return WorkerPool.start({ size, script: THREAD, eval: true, init: (i) => `worker-${i}`, ...(signal ? { signal } : {}) });
}

/** The same handlers, served in-process through the real serve loop. */
const inline: HandlerModule = {
  createHandlers: (init) => ({
    async run(kind: string, task: unknown, ctx: TaskContext) {
      const t = task as { value?: unknown; parts?: number; ms?: number };
      if (kind === 'fail') throw new IntegrityError('blob 1234 failed authentication');
      for (let i = 0; i < (t.parts ?? 0); i++) ctx.post({ part: i, of: t.value });
      await new Promise((r) => setTimeout(r, t.ms ?? 0));
      return { value: t.value, init };
    },
  }),
};

describe('worker pool (threads)', () => {
  it('runs tasks on the chosen worker; results and partial results come back in order', async () => {
    const pool = await threads(2);
    try {
      const parts: unknown[] = [];
      const results = await Promise.all(
        [30, 0, 10, 0].map((ms, i) => pool.run<{ value: number; init: string }>(i % 2, 'echo', { value: i, ms, parts: 2 }, { onPart: (p) => parts.push(p) })),
      );
      expect(results.map((r) => r.value)).toEqual([0, 1, 2, 3]);
      expect(results.map((r) => r.init)).toEqual(['worker-0', 'worker-1', 'worker-0', 'worker-1']);
      // Per task, its partial results in order; per worker, tasks in order.
      const of = (v: number) => parts.filter((p) => (p as { of: number }).of === v).map((p) => (p as { part: number }).part);
      for (let v = 0; v < 4; v++) expect(of(v)).toEqual([0, 1]);
      expect(parts.findIndex((p) => (p as { of: number }).of === 0)).toBeLessThan(parts.findIndex((p) => (p as { of: number }).of === 2));
      expect(pool.load(0) + pool.load(1)).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it('a failing task rejects with its error rebuilt (class, code, kind); the worker goes on', async () => {
    const pool = await threads(1);
    try {
      const failed = pool.run(0, 'fail', {});
      const next = pool.run<{ value: string }>(0, 'echo', { value: 'after' });
      await expect(failed).rejects.toBeInstanceOf(IntegrityError);
      await expect(failed).rejects.toMatchObject({ code: 'STRATA_INTEGRITY', kind: 'input', message: 'blob 1234 failed authentication' });
      expect((await next).value).toBe('after');
    } finally {
      await pool.close();
    }
  });

  it('a worker that crashes or exits fails every pending task and the pool', async () => {
    for (const kind of ['crash', 'exit']) {
      const pool = await threads(2);
      const other = pool.run(1, 'echo', { value: 1, ms: 5000 });
      const dead = pool.run(0, kind, {});
      await expect(dead).rejects.toThrow(kind === 'crash' ? /worker blew up/ : /exited unexpectedly \(code 7\)/);
      await expect(other).rejects.toThrow();
      await expect(pool.run(1, 'echo', { value: 2 })).rejects.toThrow();
      expect(pool.error).toBeDefined();
      await pool.close();
    }
  });

  it('an abort ends the workers, even one busy forever, and fails pending tasks with its reason', async () => {
    const ac = new AbortController();
    const pool = await threads(2, ac.signal);
    const spinning = pool.run(0, 'spin', {});
    const queued = pool.run(0, 'echo', { value: 'never' });
    const reason = new Error('job cancelled');
    ac.abort(reason);
    await expect(spinning).rejects.toBe(reason);
    await expect(queued).rejects.toBe(reason);
    await expect(pool.run(1, 'echo', { value: 1 })).rejects.toBe(reason);
    // close() resolves only once every thread has exited (terminate() of the spinning one included).
    await pool.close();
  });

  it('close() fails what is pending with PoolClosedError', async () => {
    const pool = await threads(1);
    const pending = expect(pool.run(0, 'echo', { value: 1, ms: 5000 })).rejects.toBeInstanceOf(PoolClosedError);
    await pool.close();
    await pending;
  });
});

describe('worker pool (in-process, through serve)', () => {
  it('keeps the same contract: order, partial results, rebuilt errors, abort', async () => {
    const ac = new AbortController();
    const pool = await WorkerPool.start({ size: 2, load: async () => inline, init: (i) => `inline-${i}`, signal: ac.signal });
    expect(pool.inProcess).toBe(true);
    const parts: unknown[] = [];
    const results = await Promise.all([20, 0, 5].map((ms, i) => pool.run<{ value: number; init: string }>(0, 'echo', { value: i, ms, parts: 1 }, { onPart: (p) => parts.push(p) })));
    expect(results.map((r) => r.value)).toEqual([0, 1, 2]);
    expect(parts).toEqual([0, 1, 2].map((i) => ({ part: 0, of: i })));
    await expect(pool.run(1, 'fail', {})).rejects.toBeInstanceOf(IntegrityError);
    const pending = pool.run(1, 'echo', { value: 'slow', ms: 5000 });
    ac.abort(new Error('stop'));
    await expect(pending).rejects.toThrow('stop');
    await pool.close();
  });
});

describe('worker pool launched (tasks and control before the workers are up)', () => {
  it('runs tasks and applies control messages sent before the handlers loaded, in order', async () => {
    let release!: () => void;
    const loaded = new Promise<void>((resolve) => (release = resolve));
    const seen: unknown[] = [];
    const slowToLoad: HandlerModule = {
      createHandlers: () => ({
        run: async (_kind: string, task: unknown) => ({ task, seen: [...seen] }),
        control: (data: unknown) => seen.push(data),
      }),
    };
    const { pool, ready } = WorkerPool.launch({ size: 1, load: async () => (await loaded, slowToLoad), init: () => null });
    pool.control({ step: 1 });
    pool.control({ step: 2 });
    const result = pool.run<{ task: unknown; seen: unknown[] }>(0, 'any', 'first');
    await new Promise<void>((resolve) => setTimeout(resolve, 20)); // all three have arrived, the handlers not loaded
    expect(seen).toEqual([]);
    release();
    expect(await ready).toBe(pool);
    // Both controls arrived before the handlers existed: applied once they did, in order, before the queued task ran.
    expect(await result).toEqual({ task: 'first', seen: [{ step: 1 }, { step: 2 }] });
    await pool.close();
  });

  it('a launch that fails rejects `ready` and every task already run on the pool', async () => {
    const { pool, ready } = WorkerPool.launch({ size: 1, load: async () => Promise.reject(new Error('no handlers')), init: () => null });
    const task = pool.run(0, 'any', null);
    await expect(ready).rejects.toThrow('no handlers');
    await expect(task).rejects.toThrow('no handlers');
  });
});

describe('spare workers (started before their init is known)', () => {
  const counting = (loads: { n: number }): (() => Promise<HandlerModule>) => async () => {
    loads.n++;
    return { createHandlers: (init) => ({ run: (_kind: string, task: unknown) => ({ task, init }) }) };
  };

  it('load their handlers at once, make them with the init given later, and say ready only then', async () => {
    const loads = { n: 0 };
    const spare = WorkerPool.spare({ size: 2, load: counting(loads) });
    await new Promise<void>((resolve) => setTimeout(resolve, 20));
    expect(loads.n).toBe(2); // booted without their init
    expect(spare.available).toBe(true);
    const { pool, ready } = spare.start((i) => `keys-${i}`);
    expect(spare.available).toBe(false);
    expect(() => spare.start(() => null)).toThrow(/started or closed already/);
    expect(await ready).toBe(pool);
    expect(await pool.run(1, 'any', 'task')).toEqual({ task: 'task', init: 'keys-1' });
    await pool.close();
  });

  it('a task run before the init arrives waits for it', async () => {
    const spare = WorkerPool.spare({ size: 1, load: counting({ n: 0 }) });
    const { pool } = spare.start(() => 'late');
    expect(await pool.run(0, 'any', 1)).toEqual({ task: 1, init: 'late' });
    await pool.close();
  });

  it('in threads: the init message reaches the worker script', async () => {
    const script = `
const { parentPort, workerData } = require('node:worker_threads');
let init = workerData.deferred ? undefined : workerData.init;
parentPort.on('message', (m) => {
  if (m.t === 'init') { init = m.init; parentPort.postMessage({ t: 'ready' }); }
  else if (m.t === 'task') parentPort.postMessage({ t: 'done', id: m.id, data: { init, deferred: workerData.deferred === true } });
});`;
    const { pool, ready } = WorkerPool.spare({ size: 2, script, eval: true }).start((i) => ({ worker: i }));
    await ready;
    expect(await pool.run(1, 'any', null)).toEqual({ init: { worker: 1 }, deferred: true });
    await pool.close();
  });

  it('close() ends spares never started; a start with an aborted signal fails the pool', async () => {
    const never = WorkerPool.spare({ size: 1, load: counting({ n: 0 }) });
    await never.close();
    expect(never.available).toBe(false);
    const ac = new AbortController();
    ac.abort(new Error('job cancelled'));
    const { pool, ready } = WorkerPool.spare({ size: 1, load: counting({ n: 0 }) }).start(() => null, ac.signal);
    await expect(ready).rejects.toThrow('job cancelled');
    await expect(pool.run(0, 'any', null)).rejects.toThrow('job cancelled');
  });
});
