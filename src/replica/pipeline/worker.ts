// Entry point of a pipeline worker thread: serves the replica's task handlers (tasks.ts) to the parent.
import { parentPort, workerData } from 'node:worker_threads';
import { serve } from './serve.js';

if (parentPort) {
  void serve(parentPort, { init: (workerData as { init: unknown }).init, load: () => import('./tasks.js') });
}
