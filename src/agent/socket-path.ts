// How the CLI finds the daemon: its control socket, and the switch that keeps jobs in the CLI's own
// process. A module of its own: the CLI's early start (early-start.ts) asks before any other module loads.
import path from 'node:path';

/** The daemon's control socket in a state directory. */
export function socketPathOf(stateDir: string): string {
  return path.join(stateDir, 'strata.sock');
}

/** `STRATA_NO_DAEMON=1`: the CLI runs its jobs itself even when a daemon runs. */
export function daemonBypassed(env: NodeJS.ProcessEnv = process.env): boolean {
  return env['STRATA_NO_DAEMON'] === '1';
}
