// The worker side of the pipeline protocol (protocol.ts): loads the handlers, then runs tasks one at a
// time in arrival order, applying control messages as they come (both may arrive before the handlers
// have loaded: they wait for them). A worker started without its init (a spare, started before the
// job knows its keys) loads its module meanwhile and makes its handlers when the init message comes.
// Runs in a worker thread (worker.ts),
// or on the main thread over a MessageChannel when there is no compiled worker entry (tests).
import type { MessagePort, TransferListItem } from 'node:worker_threads';
import { serializeError, type FromWorker, type HandlerModule, type ToWorker, type WorkerHandlers } from './protocol.js';

export type ServeOptions = { load: () => Promise<HandlerModule> } & ({ init: unknown } | { deferred: true });

/** Serves `port` until it closes. Never throws: failures are reported over the port. */
export async function serve(port: MessagePort, options: ServeOptions): Promise<void> {
  const send = (msg: FromWorker, transfer?: TransferListItem[]) => port.postMessage(msg, transfer);
  const tasks: { id: number; kind: string; task: unknown }[] = [];
  let handlers: WorkerHandlers | null = null;
  const controls: unknown[] = [];
  let running = false;
  let closed = false;
  let giveInit: (init: unknown) => void = () => {};
  const init = 'deferred' in options ? new Promise<unknown>((resolve) => (giveInit = resolve)) : Promise.resolve(options.init);
  const pump = async (): Promise<void> => {
    if (running || !handlers) return;
    running = true;
    try {
      for (let next = tasks.shift(); next && !closed; next = tasks.shift()) {
        const { id, kind, task } = next;
        try {
          const data = await handlers.run(kind, task, { post: (part, transfer) => send({ t: 'part', id, data: part }, transfer) });
          send({ t: 'done', id, data });
        } catch (err) {
          send({ t: 'error', id, error: serializeError(err) });
        }
      }
    } finally {
      running = false;
    }
  };
  port.on('message', (msg: ToWorker) => {
    if (msg.t === 'task') {
      tasks.push(msg);
      void pump();
    } else if (msg.t === 'init') {
      giveInit(msg.init);
    } else if (msg.t === 'control') {
      if (handlers) handlers.control?.(msg.data);
      else controls.push(msg.data); // sent before the handlers loaded: applied, in order, once they have
    }
  });
  port.on('close', () => {
    closed = true;
  });
  try {
    const mod = await options.load();
    handlers = await mod.createHandlers(await init);
    for (const data of controls.splice(0)) handlers.control?.(data);
  } catch (err) {
    send({ t: 'fatal', error: serializeError(err) });
    return;
  }
  send({ t: 'ready' });
  void pump();
}
