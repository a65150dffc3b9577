// Loads the config file: finds it, parses it, validates it, resolves relative paths against its directory.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { StrataError } from '../errors.js';
import type { StrataConfig } from './types.js';

export const DEFAULT_CONFIG_PATH = '/etc/strata/strata.json';

/** `--config`, then $STRATA_CONFIG, then /etc/strata/strata.json. */
export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(flag ?? env['STRATA_CONFIG'] ?? DEFAULT_CONFIG_PATH);
}

export function loadConfig(file: string): StrataConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new StrataError('STRATA_CONFIG_MISSING', `cannot read config ${file}: ${(err as Error).message}; pass --config FILE or set STRATA_CONFIG`, {
      kind: 'usage',
      cause: err,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StrataError('STRATA_CONFIG_INVALID', `config ${file} is not valid JSON: ${(err as Error).message}`, { kind: 'usage', cause: err });
  }
  return normalizeConfig(raw, file);
}

/** Validates a parsed config and resolves its paths relative to the config file's directory. */
export function normalizeConfig(raw: unknown, file: string): StrataConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new StrataError('STRATA_CONFIG_INVALID', `config ${file}: must be a JSON object`, { kind: 'usage' });
  }
  const config = { protectionGroups: [], subscription: { provider: 'static', state: 'active' }, ...(raw as object) } as StrataConfig;
  for (const key of ['stateDir', 'pool', 'scratch', 'passphraseFile'] as const) {
    if (typeof config[key] !== 'string' || config[key].length === 0) {
      throw new StrataError('STRATA_CONFIG_INVALID', `config ${file}: "${key}" is required (a path)`, { kind: 'usage' });
    }
  }
  const base = path.dirname(path.resolve(file));
  const abs = (p: string) => path.resolve(base, p);
  return {
    ...config,
    stateDir: abs(config.stateDir),
    pool: abs(config.pool),
    scratch: abs(config.scratch),
    passphraseFile: abs(config.passphraseFile),
    protectionGroups: config.protectionGroups.map((g) => ({ ...g, sources: g.sources.map((s) => ({ ...s, path: abs(s.path) })) })),
    configFile: path.resolve(file),
  };
}
