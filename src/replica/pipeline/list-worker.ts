// Entry point of a lister thread: serves list-tasks.ts's handlers to the parent (protocol.ts). Started
// with its init, or as a spare that gets it in a message (workers.ts spareLister).
import { parentPort, workerData } from 'node:worker_threads';
import { serve } from './serve.js';

if (parentPort) {
  const data = workerData as { init: unknown } | { deferred: true };
  void serve(parentPort, { ...data, load: () => import('./list-tasks.js') });
}
