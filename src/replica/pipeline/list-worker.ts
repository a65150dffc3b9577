// Entry point of a lister thread: serves list-tasks.ts's handlers to the parent (protocol.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { serve } from './serve.js';

if (parentPort) {
  void serve(parentPort, { init: (workerData as { init: unknown }).init, load: () => import('./list-tasks.js') });
}
