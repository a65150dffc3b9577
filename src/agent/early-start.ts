// What the CLI starts before it loads a command's modules. For a backup: the lister thread that its
// walk will run on, so that the thread boots (a Node thread and its modules: 0.1-0.2 s on a cold cache)
// while the main thread loads the command's modules and reads the config, instead of after.
import type { SpareWorkers } from '../replica/pipeline/worker-pool.js';
import { spareLister } from '../replica/pipeline/workers.js';

export interface EarlyStart {
  /** A lister thread without its walk yet (the agent context takes it; closed by whoever holds it last). */
  lister?: SpareWorkers;
}

/**
 * Starts what the command in `argv` will need first: for `backup` (not `--to cloud`, not help), a
 * lister thread. A wrong guess costs one thread, closed when the command ends.
 */
export function startEarly(argv: readonly string[]): EarlyStart {
  if (argv[0] !== 'backup' || argv.includes('--help') || argv.includes('-h')) return {};
  const to = argv.indexOf('--to');
  if (argv.includes('--to=cloud') || (to >= 0 && argv[to + 1] === 'cloud')) return {};
  try {
    return { lister: spareLister() };
  } catch {
    return {}; // no thread now (resources): the backup starts its own when it needs it, and reports why if it cannot
  }
}

/** Ends what `startEarly` started and nothing took. */
export function closeEarly(early: EarlyStart): Promise<void> {
  return early.lister?.close() ?? Promise.resolve();
}
