// Entry point of a pipeline worker thread: serves the replica's task handlers (tasks.ts) to the parent.
import { parentPort, workerData } from 'node:worker_threads';
import { serve } from './serve.js';

if (parentPort) {
  const data = workerData as { init: unknown } | { deferred: true };
  void serve(parentPort, { ...data, load: () => import('./tasks.js') });
}
