// Where the config file is, and how its relative paths resolve. Apart from load.ts (which pulls in the
// schema validator) so that the CLI's early start can find the pool before any heavier module loads.
import path from 'node:path';

export const DEFAULT_CONFIG_PATH = '/etc/strata/strata.json';

/** `--config`, then $STRATA_CONFIG, then /etc/strata/strata.json. */
export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(flag ?? env['STRATA_CONFIG'] ?? DEFAULT_CONFIG_PATH);
}

/** A path from the config file `file`, resolved against the file's directory. */
export function configRelative(file: string, p: string): string {
  return path.resolve(path.dirname(path.resolve(file)), p);
}
