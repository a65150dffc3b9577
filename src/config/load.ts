// Loads the config file: finds it, parses it, validates it, resolves relative paths against its directory.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { StrataError } from '../errors.js';
import { configRelative } from './path.js';
import { validateConfig } from './schema.js';
import type { StrataConfig } from './types.js';

export { DEFAULT_CONFIG_PATH, resolveConfigPath } from './path.js';

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

/**
 * Validates a parsed config (schema.ts: unknown keys, ranges, cron rules; throws STRATA_CONFIG_INVALID),
 * fills in the defaults (no protection groups; a static, active subscription) and resolves every path
 * (stateDir, pool, scratch, passphraseFile, sources, embeddedAzurite.location) relative to the config
 * file's directory. Pure apart from path resolution; the returned config records `configFile`.
 */
export function normalizeConfig(raw: unknown, file: string): StrataConfig {
  const valid = validateConfig(raw, file);
  // The schema leaves these two out of `required`: absent means none and a static, active subscription.
  const config: StrataConfig = {
    ...valid,
    protectionGroups: valid.protectionGroups ?? [],
    subscription: valid.subscription ?? { provider: 'static', state: 'active' },
  };
  const abs = (p: string) => configRelative(file, p);
  const normalized: StrataConfig = {
    ...config,
    stateDir: abs(config.stateDir),
    pool: abs(config.pool),
    scratch: abs(config.scratch),
    passphraseFile: abs(config.passphraseFile),
    protectionGroups: config.protectionGroups.map((g) => ({ ...g, sources: g.sources.map((s) => ({ ...s, path: abs(s.path) })) })),
    configFile: path.resolve(file),
  };
  if (config.embeddedAzurite?.location !== undefined) {
    normalized.embeddedAzurite = { ...config.embeddedAzurite, location: abs(config.embeddedAzurite.location) };
  }
  return normalized;
}
