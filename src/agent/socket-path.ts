// Where the daemon's control socket is. A module of its own: the CLI's early start (early-start.ts)
// looks for it before any other module loads.
import path from 'node:path';

/** The daemon's control socket in a state directory. */
export function socketPathOf(stateDir: string): string {
  return path.join(stateDir, 'strata.sock');
}
