import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { StrataError } from '../errors.js';
import { DEFAULT_CONFIG_PATH, loadConfig, normalizeConfig, resolveConfigPath } from './load.js';

const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../config/strata.example.json');
const dir = mkdtempSync(path.join(tmpdir(), 'strata-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StrataError);
    expect((err as StrataError).kind).toBe('usage');
    return (err as StrataError).code;
  }
  throw new Error('expected an error');
}

describe('resolveConfigPath', () => {
  it('prefers --config, then STRATA_CONFIG, then the default', () => {
    expect(resolveConfigPath('/a.json', { STRATA_CONFIG: '/b.json' })).toBe('/a.json');
    expect(resolveConfigPath(undefined, { STRATA_CONFIG: '/b.json' })).toBe('/b.json');
    expect(resolveConfigPath(undefined, {})).toBe(DEFAULT_CONFIG_PATH);
  });
});

describe('normalizeConfig', () => {
  it('resolves relative paths against the config file directory and fills defaults', () => {
    const config = normalizeConfig(
      {
        stateDir: 'state',
        pool: '../pool',
        scratch: '/abs/scratch',
        passphraseFile: './pass',
        protectionGroups: [{ name: 'g', sources: [{ path: 'data' }], disk: { syncFrequency: '0 * * * *', retentionDays: 3 } }],
        embeddedAzurite: { enabled: true, location: 'azurite' },
      },
      '/etc/strata/strata.json',
    );
    expect(config.stateDir).toBe('/etc/strata/state');
    expect(config.pool).toBe('/etc/pool');
    expect(config.scratch).toBe('/abs/scratch');
    expect(config.passphraseFile).toBe('/etc/strata/pass');
    expect(config.protectionGroups[0]!.sources[0]!.path).toBe('/etc/strata/data');
    expect(config.embeddedAzurite).toEqual({ enabled: true, location: '/etc/strata/azurite' });
    expect(config.subscription).toEqual({ provider: 'static', state: 'active' });
    expect(config.configFile).toBe('/etc/strata/strata.json');
  });

  it('defaults to no protection groups', () => {
    const config = normalizeConfig({ stateDir: 's', pool: 'p', scratch: 'c', passphraseFile: 'f' }, '/x/strata.json');
    expect(config.protectionGroups).toEqual([]);
  });

  it('validates with the schema', () => {
    expect(codeOf(() => normalizeConfig({ stateDir: 's', pool: 'p', scratch: 'c', passphraseFile: 'f', extra: 1 }, '/x.json'))).toBe('STRATA_CONFIG_INVALID');
    expect(codeOf(() => normalizeConfig({ pool: 'p', scratch: 'c', passphraseFile: 'f' }, '/x.json'))).toBe('STRATA_CONFIG_INVALID');
    expect(codeOf(() => normalizeConfig('nope', '/x.json'))).toBe('STRATA_CONFIG_INVALID');
  });
});

describe('loadConfig', () => {
  it('loads the shipped example, resolving its paths next to the repository', () => {
    const config = loadConfig(EXAMPLE);
    const root = path.resolve(path.dirname(EXAMPLE), '..');
    expect(config.stateDir).toBe(path.join(root, 'var/state'));
    expect(config.pool).toBe(path.join(root, 'var/pool'));
    expect(config.scratch).toBe(path.join(root, 'var/scratch'));
    expect(config.passphraseFile).toBe(path.join(root, 'var/passphrase'));
    expect(config.protectionGroups.map((g) => [g.name, g.sources[0]!.path])).toEqual([['demo', path.join(root, 'var/demo-data')]]);
    expect(config.embeddedAzurite?.enabled).toBe(true);
  });

  it('reports a missing file and bad JSON', () => {
    expect(codeOf(() => loadConfig(path.join(dir, 'missing.json')))).toBe('STRATA_CONFIG_MISSING');
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, '{ "pool": ');
    expect(codeOf(() => loadConfig(bad))).toBe('STRATA_CONFIG_INVALID');
  });

  it('reports an invalid value with its key path', () => {
    const file = path.join(dir, 'strata.json');
    writeFileSync(
      file,
      JSON.stringify({
        stateDir: 's',
        pool: 'p',
        scratch: 'c',
        passphraseFile: 'f',
        protectionGroups: [{ name: 'g', sources: [{ path: 'd' }], disk: { syncFrequency: '*/15 * * * *', retentionDays: 500 } }],
      }),
    );
    expect(() => loadConfig(file)).toThrow(`config ${file}: protectionGroups[0].disk.retentionDays must be an integer from 1 to 448 (days) (got 500)`);
  });
});
