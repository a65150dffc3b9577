// The config file's JSON schema (unknown keys are errors) and the rules a schema cannot say (cron intervals, names).
import type { ErrorObject, ValidateFunction } from 'ajv';
import { createRequire } from 'node:module';
import { StrataError } from '../errors.js';
import { assertTimeZone, intervalBounds, maxRunsPerDay, parseCron } from '../scheduler/schedule.js';
import type { StrataConfig } from './types.js';

const MINUTE_MS = 60_000;
/** Disk sync frequency bounds (DESIGN.md, "Rules carried over from Azure Backup Server"). */
export const SYNC_MIN_INTERVAL_MS = 15 * MINUTE_MS;
export const SYNC_MAX_INTERVAL_MS = 24 * 60 * MINUTE_MS;
/** At most this many scheduled cloud recovery points a day. */
export const ONLINE_MAX_RUNS_PER_DAY = 2;

const path = { type: 'string', minLength: 1, description: "a non-empty path (a relative path is read from the config file's directory)" };
const int = (min: number, max: number, unit: string) => ({ type: 'integer', minimum: min, maximum: max, description: `an integer from ${min} to ${max} (${unit})` });
/** A three-letter day name in any case (the check of the name itself is case-insensitive, below). */
const DAY = '[A-Za-z]{3}';
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const HHMM = '([01][0-9]|2[0-3]):[0-5][0-9]';

/**
 * The JSON schema of strata.json. Every object has `additionalProperties: false`. Each constrained value
 * carries a `description` that says what is allowed: validation errors quote it.
 */
export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['stateDir', 'pool', 'scratch', 'passphraseFile'],
  properties: {
    stateDir: path,
    pool: path,
    scratch: path,
    passphraseFile: path,
    timezone: { type: 'string', minLength: 1, description: 'an IANA time zone name such as "Europe/Paris" or "UTC"' },
    protectionGroups: {
      type: 'array',
      description: 'a list of protection groups',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'sources', 'disk'],
        properties: {
          name: {
            type: 'string',
            minLength: 1,
            maxLength: 64,
            pattern: '^[\\p{L}\\p{Nd}_-](?:[\\p{L}\\p{Nd} _-]*[\\p{L}\\p{Nd}_-])?$',
            description: "1 to 64 letters, digits, spaces, '-' or '_' (not starting or ending with a space)",
          },
          sources: {
            type: 'array',
            minItems: 1,
            description: 'a non-empty list of data sources',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['path'],
              properties: {
                path,
                type: { enum: ['directory', 'sqlite'], description: 'one of "directory", "sqlite"' },
                exclude: { type: 'array', items: { type: 'string', minLength: 1, description: 'a glob pattern' }, description: 'a list of glob patterns' },
                pre: { type: 'string', description: 'a shell command' },
                post: { type: 'string', description: 'a shell command' },
              },
            },
          },
          disk: {
            type: 'object',
            additionalProperties: false,
            required: ['syncFrequency', 'retentionDays'],
            properties: {
              syncFrequency: { type: 'string', minLength: 1, description: 'a cron expression running every 15 minutes to every 24 hours' },
              retentionDays: int(1, 448, 'days'),
            },
          },
          online: {
            type: ['object', 'null'],
            additionalProperties: false,
            required: ['schedule', 'retention'],
            description: 'null or an object with "schedule" and "retention"',
            properties: {
              schedule: { type: 'string', minLength: 1, description: 'a cron expression with at most 2 runs a day' },
              retention: {
                type: 'object',
                additionalProperties: false,
                required: ['daily'],
                properties: {
                  daily: int(7, 9999, 'days'),
                  weekly: int(4, 5163, 'weeks'),
                  monthly: int(3, 1188, 'months'),
                  yearly: int(1, 99, 'years'),
                },
              },
            },
          },
        },
      },
    },
    subscription: {
      type: 'object',
      additionalProperties: false,
      required: ['provider'],
      properties: {
        provider: { enum: ['arm', 'static'], description: 'one of "arm", "static"' },
        state: { enum: ['active', 'expired', 'deprovisioned'], description: 'one of "active", "expired", "deprovisioned"' },
        managementEndpoint: { type: 'string', pattern: '^https?://[^\\s/]+(/[^\\s]*)?$', description: 'an http(s) URL such as https://management.azure.com' },
        cacheMinutes: { type: 'number', minimum: 0, maximum: 1440, description: 'a number of minutes from 0 to 1440' },
      },
    },
    throttle: {
      type: ['object', 'null'],
      additionalProperties: false,
      required: ['workHours', 'workDays'],
      description: 'null or an object with "workHours" and "workDays"',
      properties: {
        workHours: {
          type: 'string',
          pattern: `^${HHMM}-(${HHMM}|24:00)$`,
          description: '"HH:MM-HH:MM" in 24-hour local time, such as "08:00-18:00" (a window may cross midnight)',
        },
        workDays: {
          type: 'string',
          pattern: `^ *${DAY}(-${DAY})?( *, *${DAY}(-${DAY})?)* *$`,
          description: 'day names as ranges or a comma list, such as "mon-fri", "mon,wed,fri" or "fri-mon"',
        },
        workMbps: { type: 'number', minimum: 0, description: 'megabits per second, 0 for unlimited' },
        otherMbps: { type: 'number', minimum: 0, description: 'megabits per second, 0 for unlimited' },
      },
    },
    proxy: {
      type: ['null', 'string', 'object'],
      minLength: 1,
      additionalProperties: false,
      required: ['url'],
      description: 'null, a proxy URL, or an object with "url" (and "username", "password", "noProxy")',
      properties: {
        url: { type: 'string', minLength: 1, description: 'a proxy URL such as http://proxy:3128' },
        username: { type: 'string', description: 'a string' },
        password: { type: 'string', description: 'a string' },
        noProxy: { type: 'array', items: { type: 'string', minLength: 1, description: 'a host name or address' }, description: 'a list of host names' },
      },
    },
    embeddedAzurite: {
      type: ['object', 'null'],
      additionalProperties: false,
      required: ['enabled'],
      description: 'null or an object with "enabled"',
      properties: {
        enabled: { type: 'boolean', description: 'true or false' },
        location: path,
      },
    },
    console: {
      type: ['object', 'null'],
      additionalProperties: false,
      required: ['listen'],
      description: 'null or an object with "listen"',
      properties: {
        listen: {
          type: 'string',
          pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$',
          description: '"host:port" such as "127.0.0.1:8080" (an IPv6 host in brackets)',
        },
      },
    },
  },
} as const;

/**
 * How the schema is compiled (here, and by the build into standalone code). validateSchema: false: the
 * schema is ours and fixed (its tests compile it); checking it against the draft-07 meta-schema cost
 * ~40 ms of every command's start-up.
 */
export const AJV_OPTIONS = { allErrors: false, verbose: true, strict: true, allowUnionTypes: true, validateSchema: false } as const;

let compiled: ValidateFunction | null = null;

/**
 * The schema's validator: the build's standalone code (scripts/build-config-validator.mjs: no Ajv to
 * load or compile at start-up, ~70 ms), or, running from source, the schema compiled by Ajv here.
 */
function validator(): ValidateFunction {
  if (compiled) return compiled;
  const require = createRequire(import.meta.url);
  try {
    compiled = require('./config-validator.cjs') as ValidateFunction;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    const { Ajv } = require('ajv') as typeof import('ajv');
    compiled = new Ajv(AJV_OPTIONS).compile(CONFIG_SCHEMA);
  }
  return compiled;
}

/** JSON pointer "/protectionGroups/0/disk" → "protectionGroups[0].disk". */
export function keyPath(pointer: string, child?: string): string {
  const parts = pointer === '' ? [] : pointer.slice(1).split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) parts.push(child);
  let out = '';
  for (const p of parts) {
    if (/^\d+$/.test(p)) out += `[${p}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(p)}]`;
  }
  return out || '(top level)';
}

const SECRET = /password|secret|key|token/i;

function shown(value: unknown, pointer: string): string {
  if (SECRET.test(pointer)) return '';
  let text = JSON.stringify(value);
  if (text === undefined) return '';
  if (text.length > 40) text = `${text.slice(0, 37)}...`;
  return ` (got ${text})`;
}

function invalid(file: string, message: string): StrataError {
  return new StrataError('STRATA_CONFIG_INVALID', `config ${file}: ${message}`, { kind: 'usage' });
}

function describeAjvError(e: ErrorObject): string {
  const parent = (e.parentSchema ?? {}) as { description?: string; properties?: Record<string, { description?: string }> };
  switch (e.keyword) {
    case 'additionalProperties': {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      const known = Object.keys(parent.properties ?? {});
      return `${keyPath(e.instancePath, extra)} is not a known key${known.length ? ` (allowed here: ${known.join(', ')})` : ''}`;
    }
    case 'required': {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      const what = parent.properties?.[missing]?.description;
      return `${keyPath(e.instancePath, missing)} is required${what ? ` (${what})` : ''}`;
    }
    default: {
      const what = parent.description ?? e.message ?? 'is invalid';
      return `${keyPath(e.instancePath)} must be ${what}${shown(e.data, e.instancePath)}`;
    }
  }
}

function formatInterval(ms: number): string {
  const minutes = Math.round(ms / MINUTE_MS);
  if (minutes % 1440 === 0) return minutes === 1440 ? '24 hours' : `${minutes / 1440} days`;
  if (minutes % 60 === 0) return minutes === 60 ? '1 hour' : `${minutes / 60} hours`;
  return minutes === 1 ? '1 minute' : `${minutes} minutes`;
}

/** Parses a cron expression for a config key, with node-cron's validator as a second opinion. */
function checkCron(file: string, key: string, expr: string): void {
  try {
    parseCron(expr);
  } catch (err) {
    throw invalid(file, `${key} must be a cron expression (5 fields: minute hour day-of-month month day-of-week): ${(err as Error).message}`);
  }
  if (!nodeCron().validate(expr)) throw invalid(file, `${key} "${expr}" is not a valid cron expression (node-cron rejects it)`);
}

/** node-cron, loaded (its CommonJS build, synchronously) only for a config that has schedules: ~28 ms of start-up otherwise. */
function nodeCron(): typeof import('node-cron') {
  return createRequire(import.meta.url)('node-cron') as typeof import('node-cron');
}

/**
 * Validates a parsed config file against CONFIG_SCHEMA and the rules from DESIGN.md, returning it typed.
 * Nothing is filled in or resolved (load.ts does that). Throws StrataError STRATA_CONFIG_INVALID (kind
 * 'usage') on the first problem, with a one-line message naming the file, the key path (such as
 * `protectionGroups[0].disk.retentionDays`) and what is allowed. Secrets are never quoted.
 */
export function validateConfig(raw: unknown, file: string): StrataConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(file, 'must be a JSON object');
  const validate = validator();
  if (!validate(raw)) throw invalid(file, describeAjvError(validate.errors![0]!));
  const config = raw as StrataConfig;

  const seen = new Map<string, number>();
  (config.protectionGroups ?? []).forEach((group, i) => {
    const key = `protectionGroups[${i}]`;
    const folded = group.name.toLowerCase();
    const earlier = seen.get(folded);
    if (earlier !== undefined) throw invalid(file, `${key}.name "${group.name}" is already used by protectionGroups[${earlier}] (names are compared ignoring case)`);
    seen.set(folded, i);

    const sync = group.disk.syncFrequency;
    checkCron(file, `${key}.disk.syncFrequency`, sync);
    const { min, max } = intervalBounds(sync);
    if (min < SYNC_MIN_INTERVAL_MS || max > SYNC_MAX_INTERVAL_MS) {
      const got = min === max ? `every ${formatInterval(min)}` : `between ${formatInterval(min)} and ${formatInterval(max)} apart`;
      throw invalid(file, `${key}.disk.syncFrequency "${sync}" runs ${got}; allowed: every 15 minutes to every 24 hours`);
    }

    if (group.online) {
      const schedule = group.online.schedule;
      checkCron(file, `${key}.online.schedule`, schedule);
      const perDay = maxRunsPerDay(schedule);
      if (perDay > ONLINE_MAX_RUNS_PER_DAY) {
        throw invalid(file, `${key}.online.schedule "${schedule}" runs up to ${perDay} times a day; allowed: at most ${ONLINE_MAX_RUNS_PER_DAY} a day`);
      }
    }
  });

  const sub = config.subscription as { provider: 'arm' | 'static'; state?: string; managementEndpoint?: string; cacheMinutes?: number } | undefined;
  if (sub?.provider === 'static') {
    if (sub.state === undefined) throw invalid(file, 'subscription.state is required when subscription.provider is "static" (one of "active", "expired", "deprovisioned")');
    for (const k of ['managementEndpoint', 'cacheMinutes'] as const) {
      if (sub[k] !== undefined) throw invalid(file, `subscription.${k} applies only to subscription.provider "arm"`);
    }
  }
  if (sub?.provider === 'arm' && sub.state !== undefined) {
    throw invalid(file, 'subscription.state applies only to subscription.provider "static" (with "arm", Azure Resource Manager says the state)');
  }

  if (config.throttle) {
    // The same rules as src/store/bandwidth-schedule.ts, which applies them: "24:00" as an end is midnight.
    const [start, end] = config.throttle.workHours.split('-') as [string, string];
    if (start === (end === '24:00' ? '00:00' : end)) {
      throw invalid(file, `throttle.workHours "${config.throttle.workHours}" is an empty window; use "HH:MM-HH:MM" with two different times`);
    }
    const unknown = config.throttle.workDays
      .split(/[\s,-]+/)
      .filter((d) => d !== '' && !DAY_NAMES.includes(d.toLowerCase()));
    if (unknown.length > 0) {
      throw invalid(file, `throttle.workDays "${config.throttle.workDays}" names no day "${unknown[0]}"; use mon, tue, wed, thu, fri, sat, sun`);
    }
  }

  if (config.timezone !== undefined) {
    try {
      assertTimeZone(config.timezone);
    } catch {
      throw invalid(file, `timezone "${config.timezone}" is not a known time zone; use an IANA name such as "Europe/Paris" or "UTC"`);
    }
  }

  if (config.console) {
    const port = Number(/:(\d+)$/.exec(config.console.listen)![1]);
    if (port > 65535) throw invalid(file, `console.listen "${config.console.listen}" has port ${port}; allowed: 0 to 65535`);
    // The console is for this machine's admin: loopback only (from elsewhere, through an SSH tunnel).
    const host = config.console.listen.slice(0, config.console.listen.lastIndexOf(':')).replace(/^\[|\]$/g, '').toLowerCase();
    const loopback = host === 'localhost' || /^127(\.\d{1,3}){3}$/.test(host) || host === '::1' || /^::ffff:127(\.\d{1,3}){3}$/.test(host);
    if (!loopback) {
      throw invalid(
        file,
        `console.listen "${config.console.listen}" is not a loopback address; allowed: 127.0.0.1, [::1] or localhost with a port (reach the console from another machine through an SSH tunnel)`,
      );
    }
  }

  if (typeof config.proxy === 'string' || (config.proxy && typeof config.proxy === 'object')) {
    const url = typeof config.proxy === 'string' ? config.proxy : config.proxy.url;
    const key = typeof config.proxy === 'string' ? 'proxy' : 'proxy.url';
    try {
      const parsed = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`);
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('scheme');
    } catch {
      throw invalid(file, `${key} must be an http(s) proxy URL such as http://proxy:3128`);
    }
  }
  return config;
}
