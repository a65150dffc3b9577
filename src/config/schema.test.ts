import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { StrataError } from '../errors.js';
import { keyPath, validateConfig } from './schema.js';

const FILE = '/etc/strata/strata.json';
const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../config/strata.example.json');

/** A valid config; each case edits a copy. */
function base(): Record<string, any> {
  return {
    stateDir: '/var/lib/strata',
    pool: '/srv/strata/pool',
    scratch: '/srv/strata/scratch',
    passphraseFile: '/etc/strata/passphrase',
    protectionGroups: [
      {
        name: 'fileserver',
        sources: [{ path: '/srv/data', exclude: ['*.tmp'] }],
        disk: { syncFrequency: '*/15 * * * *', retentionDays: 14 },
        online: { schedule: '0 21 * * *', retention: { daily: 30, weekly: 12, monthly: 12, yearly: 3 } },
      },
    ],
    subscription: { provider: 'arm' },
    throttle: { workHours: '08:00-18:00', workDays: 'mon-fri', workMbps: 50, otherMbps: 500 },
    proxy: null,
  };
}

function edited(edit: (c: Record<string, any>) => void): Record<string, any> {
  const c = base();
  edit(c);
  return c;
}

function errorOf(raw: unknown): StrataError {
  try {
    validateConfig(raw, FILE);
  } catch (err) {
    expect(err).toBeInstanceOf(StrataError);
    const e = err as StrataError;
    expect(e.code).toBe('STRATA_CONFIG_INVALID');
    expect(e.kind).toBe('usage');
    expect(e.message).not.toContain('\n');
    expect(e.message.startsWith(`config ${FILE}: `)).toBe(true);
    return e;
  }
  throw new Error('expected the config to be rejected');
}

const group = (c: Record<string, any>) => c['protectionGroups'][0];

describe('validateConfig accepts', () => {
  it.each([
    ['the DESIGN.md example', () => base()],
    ['the minimal config', () => ({ stateDir: 's', pool: 'p', scratch: 'c', passphraseFile: 'f' })],
    ['group names with letters, digits, spaces, - and _', () => edited((c) => (group(c).name = 'Serveur de fichiers_2-b'))],
    ['a 64-character name', () => edited((c) => (group(c).name = 'a'.repeat(64)))],
    ['a non-ASCII letter', () => edited((c) => (group(c).name = 'données'))],
    ['every 24 hours', () => edited((c) => (group(c).disk.syncFrequency = '30 1 * * *'))],
    ['every hour on the half hour', () => edited((c) => (group(c).disk.syncFrequency = '30 * * * *'))],
    ['every 2 hours', () => edited((c) => (group(c).disk.syncFrequency = '0 */2 * * *'))],
    ['every 15 minutes during work hours', () => edited((c) => (group(c).disk.syncFrequency = '*/15 8-17 * * *'))],
    ['retention bounds', () => edited((c) => Object.assign(group(c).disk, { retentionDays: 448 }))],
    ['online twice a day', () => edited((c) => (group(c).online.schedule = '0 9,21 * * *'))],
    ['online on weekdays only', () => edited((c) => (group(c).online.schedule = '0 21 * * mon-fri'))],
    ['online retention at its minimums', () => edited((c) => (group(c).online.retention = { daily: 7, weekly: 4, monthly: 3, yearly: 1 }))],
    ['online retention at its maximums', () => edited((c) => (group(c).online.retention = { daily: 9999, weekly: 5163, monthly: 1188, yearly: 99 }))],
    ['online daily only', () => edited((c) => (group(c).online.retention = { daily: 30 }))],
    ['online null', () => edited((c) => (group(c).online = null))],
    ['static subscription', () => edited((c) => (c['subscription'] = { provider: 'static', state: 'expired' }))],
    ['arm with endpoint and cache', () => edited((c) => (c['subscription'] = { provider: 'arm', managementEndpoint: 'http://127.0.0.1:9999', cacheMinutes: 5 }))],
    ['proxy as a string', () => edited((c) => (c['proxy'] = 'http://proxy:3128'))],
    ['proxy as an object', () => edited((c) => (c['proxy'] = { url: 'http://proxy:3128', username: 'u', password: 'p', noProxy: ['localhost'] }))],
    ['throttle across midnight, a day list', () => edited((c) => (c['throttle'] = { workHours: '22:00-06:00', workDays: 'mon,wed,fri-sun' }))],
    ['throttle to 24:00', () => edited((c) => (c['throttle'] = { workHours: '08:00-24:00', workDays: 'sat' }))],
    ['day names in any case, spaced lists, wrapping ranges', () => edited((c) => (c['throttle'] = { workHours: '08:00-18:00', workDays: 'Mon-Wed, sat,fri-mon' }))],
    ['throttle null', () => edited((c) => (c['throttle'] = null))],
    ['console', () => edited((c) => (c['console'] = { listen: '127.0.0.1:8080' }))],
    ['console on IPv6', () => edited((c) => (c['console'] = { listen: '[::1]:0' }))],
    ['embedded Azurite', () => edited((c) => (c['embeddedAzurite'] = { enabled: true, location: '../var/azurite' }))],
    ['a time zone', () => edited((c) => (c['timezone'] = 'Europe/Paris'))],
    ['a sqlite source with pre and post', () => edited((c) => (group(c).sources = [{ path: '/db.sqlite', type: 'sqlite', pre: 'true', post: 'true' }]))],
  ])('%s', (_name, make) => {
    const raw = make();
    expect(validateConfig(raw, FILE)).toBe(raw);
  });

  it('the shipped example config (npm start)', () => {
    const raw = JSON.parse(readFileSync(EXAMPLE, 'utf8'));
    expect(() => validateConfig(raw, EXAMPLE)).not.toThrow();
    expect(raw.protectionGroups[0].name).toBe('demo');
    expect(raw.subscription).toEqual({ provider: 'static', state: 'active' });
  });
});

describe('validateConfig rejects', () => {
  it.each([
    // unknown keys, anywhere
    ['an unknown top-level key', (c: any) => (c.pools = 'x'), /: pools is not a known key \(allowed here: stateDir, pool, /],
    ['an unknown nested key', (c: any) => (group(c).disk.retentionDay = 3), /protectionGroups\[0\]\.disk\.retentionDay is not a known key \(allowed here: syncFrequency, retentionDays\)/],
    ['an unknown key in a source', (c: any) => (group(c).sources[0].excludes = []), /protectionGroups\[0\]\.sources\[0\]\.excludes is not a known key/],
    ['an unknown key in retention', (c: any) => (group(c).online.retention.hourly = 3), /protectionGroups\[0\]\.online\.retention\.hourly is not a known key/],
    ['configFile written in the file', (c: any) => (c.configFile = '/x'), /configFile is not a known key/],
    // required
    ['a missing path', (c: any) => delete c.pool, /: pool is required \(a non-empty path/],
    ['an empty path', (c: any) => (c.scratch = ''), /scratch must be a non-empty path/],
    ['a group without sources', (c: any) => (group(c).sources = []), /protectionGroups\[0\]\.sources must be a non-empty list/],
    // group names
    ['an empty name', (c: any) => (group(c).name = ''), /protectionGroups\[0\]\.name must be 1 to 64 letters, digits, spaces, '-' or '_'/],
    ['a 65-character name', (c: any) => (group(c).name = 'a'.repeat(65)), /protectionGroups\[0\]\.name must be 1 to 64/],
    ['a name with a slash', (c: any) => (group(c).name = 'a/b'), /protectionGroups\[0\]\.name must be 1 to 64 .* \(got "a\/b"\)/],
    ['a name with a dot', (c: any) => (group(c).name = 'a.b'), /name must be 1 to 64/],
    ['a name with a leading space', (c: any) => (group(c).name = ' a'), /name must be 1 to 64/],
    ['a duplicate name', (c: any) => c.protectionGroups.push({ ...group(c), name: 'FileServer' }), /protectionGroups\[1\]\.name "FileServer" is already used by protectionGroups\[0\]/],
    // disk
    ['retentionDays 0', (c: any) => (group(c).disk.retentionDays = 0), /protectionGroups\[0\]\.disk\.retentionDays must be an integer from 1 to 448 \(days\) \(got 0\)/],
    ['retentionDays 449', (c: any) => (group(c).disk.retentionDays = 449), /retentionDays must be an integer from 1 to 448/],
    ['retentionDays 1.5', (c: any) => (group(c).disk.retentionDays = 1.5), /retentionDays must be an integer from 1 to 448/],
    ['retentionDays as a string', (c: any) => (group(c).disk.retentionDays = '14'), /retentionDays must be an integer from 1 to 448/],
    ['sync every 5 minutes', (c: any) => (group(c).disk.syncFrequency = '*/5 * * * *'), /disk\.syncFrequency "\*\/5 \* \* \* \*" runs every 5 minutes; allowed: every 15 minutes to every 24 hours/],
    ['sync twice close together', (c: any) => (group(c).disk.syncFrequency = '0,10 * * * *'), /runs between 10 minutes and 50 minutes apart; allowed: every 15 minutes to every 24 hours/],
    ['sync weekly', (c: any) => (group(c).disk.syncFrequency = '0 0 * * 0'), /runs every 7 days; allowed/],
    ['sync on weekdays only', (c: any) => (group(c).disk.syncFrequency = '0 0 * * 1-5'), /runs between 24 hours and 3 days apart; allowed/],
    ['a bad cron', (c: any) => (group(c).disk.syncFrequency = '*/15 * * *'), /disk\.syncFrequency must be a cron expression .*expected 5 fields/],
    ['a cron out of range', (c: any) => (group(c).disk.syncFrequency = '0 25 * * *'), /disk\.syncFrequency must be a cron expression .*hour field "25"/],
    ['a seconds field', (c: any) => (group(c).disk.syncFrequency = '0 */15 * * * *'), /expected 5 fields/],
    // online
    ['online three times a day', (c: any) => (group(c).online.schedule = '0 9,13,21 * * *'), /online\.schedule "0 9,13,21 \* \* \*" runs up to 3 times a day; allowed: at most 2 a day/],
    ['online every hour', (c: any) => (group(c).online.schedule = '0 * * * *'), /runs up to 24 times a day/],
    ['a bad online cron', (c: any) => (group(c).online.schedule = 'daily'), /online\.schedule must be a cron expression/],
    ['daily 6', (c: any) => (group(c).online.retention.daily = 6), /online\.retention\.daily must be an integer from 7 to 9999 \(days\)/],
    ['daily 10000', (c: any) => (group(c).online.retention.daily = 10000), /online\.retention\.daily must be an integer from 7 to 9999/],
    ['weekly 3', (c: any) => (group(c).online.retention.weekly = 3), /online\.retention\.weekly must be an integer from 4 to 5163 \(weeks\)/],
    ['weekly 5164', (c: any) => (group(c).online.retention.weekly = 5164), /weekly must be an integer from 4 to 5163/],
    ['monthly 2', (c: any) => (group(c).online.retention.monthly = 2), /online\.retention\.monthly must be an integer from 3 to 1188 \(months\)/],
    ['monthly 1189', (c: any) => (group(c).online.retention.monthly = 1189), /monthly must be an integer from 3 to 1188/],
    ['yearly 0', (c: any) => (group(c).online.retention.yearly = 0), /online\.retention\.yearly must be an integer from 1 to 99 \(years\)/],
    ['yearly 100', (c: any) => (group(c).online.retention.yearly = 100), /yearly must be an integer from 1 to 99/],
    ['online without daily', (c: any) => delete group(c).online.retention.daily, /online\.retention\.daily is required \(an integer from 7 to 9999/],
    // subscription
    ['an unknown provider', (c: any) => (c.subscription = { provider: 'aws' }), /subscription\.provider must be one of "arm", "static" \(got "aws"\)/],
    ['static without state', (c: any) => (c.subscription = { provider: 'static' }), /subscription\.state is required when subscription\.provider is "static"/],
    ['static with a bad state', (c: any) => (c.subscription = { provider: 'static', state: 'paused' }), /subscription\.state must be one of "active", "expired", "deprovisioned"/],
    ['arm with a state', (c: any) => (c.subscription = { provider: 'arm', state: 'active' }), /subscription\.state applies only to subscription\.provider "static"/],
    ['static with an endpoint', (c: any) => (c.subscription = { provider: 'static', state: 'active', managementEndpoint: 'https://x' }), /subscription\.managementEndpoint applies only to/],
    ['a bad endpoint', (c: any) => (c.subscription = { provider: 'arm', managementEndpoint: 'management.azure.com' }), /subscription\.managementEndpoint must be an http\(s\) URL/],
    // throttle
    ['bad work hours', (c: any) => (c.throttle.workHours = '8-18'), /throttle\.workHours must be "HH:MM-HH:MM"/],
    ['work hours 25:00', (c: any) => (c.throttle.workHours = '08:00-25:00'), /throttle\.workHours must be "HH:MM-HH:MM"/],
    ['an empty work window', (c: any) => (c.throttle.workHours = '08:00-08:00'), /throttle\.workHours "08:00-08:00" is an empty window/],
    ['bad work days', (c: any) => (c.throttle.workDays = 'monday-friday'), /throttle\.workDays must be day names as ranges or a comma list/],
    ['an unknown day', (c: any) => (c.throttle.workDays = 'mon-frj'), /throttle\.workDays "mon-frj" names no day "frj"/],
    ['a whole-day window written 00:00-24:00', (c: any) => (c.throttle.workHours = '00:00-24:00'), /is an empty window/],
    ['negative Mbps', (c: any) => (c.throttle.workMbps = -1), /throttle\.workMbps must be megabits per second/],
    ['throttle without days', (c: any) => delete c.throttle.workDays, /throttle\.workDays is required/],
    // proxy
    ['proxy as a number', (c: any) => (c.proxy = 3128), /proxy must be null, a proxy URL, or an object/],
    ['proxy object without url', (c: any) => (c.proxy = { username: 'u' }), /proxy\.url is required/],
    ['proxy with an unknown key', (c: any) => (c.proxy = { url: 'http://p:1', port: 1 }), /proxy\.port is not a known key/],
    ['a socks proxy', (c: any) => (c.proxy = 'socks5://p:1080'), /proxy must be an http\(s\) proxy URL/],
    ['never quotes a password', (c: any) => (c.proxy = { url: 'http://p:1', password: 42 }), /proxy\.password must be a string$/],
    // console, azurite, time zone
    ['console without port', (c: any) => (c.console = { listen: 'localhost' }), /console\.listen must be "host:port"/],
    ['console port too big', (c: any) => (c.console = { listen: 'localhost:70000' }), /console\.listen "localhost:70000" has port 70000; allowed: 0 to 65535/],
    ['azurite without enabled', (c: any) => (c.embeddedAzurite = { location: '/x' }), /embeddedAzurite\.enabled is required \(true or false\)/],
    ['azurite enabled as a string', (c: any) => (c.embeddedAzurite = { enabled: 'yes' }), /embeddedAzurite\.enabled must be true or false/],
    ['an unknown time zone', (c: any) => (c.timezone = 'Mars/Olympus'), /timezone "Mars\/Olympus" is not a known time zone/],
  ])('%s', (_name, edit, message) => {
    expect(errorOf(edited(edit)).message).toMatch(message);
  });

  it.each([
    ['an array', []],
    ['null', null],
    ['a string', 'x'],
  ])('a config that is %s', (_name, raw) => {
    expect(errorOf(raw).message).toMatch(/must be a JSON object/);
  });
});

describe('keyPath', () => {
  it.each([
    ['', undefined, '(top level)'],
    ['', 'pool', 'pool'],
    ['/protectionGroups/0/disk/retentionDays', undefined, 'protectionGroups[0].disk.retentionDays'],
    ['/protectionGroups/2', 'name', 'protectionGroups[2].name'],
    ['/a~1b', undefined, '["a/b"]'],
  ])('%j + %j → %s', (pointer, child, want) => {
    expect(keyPath(pointer, child)).toBe(want);
  });
});
