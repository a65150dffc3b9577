// Cron schedules as pure functions of time: next run, runs in a window, missed runs, interval bounds.
// No timers here: the agent sleeps on its Clock until `nextRun`, and records `missedRuns` after downtime.
import { StrataError } from '../errors.js';

/**
 * A parsed five-field cron expression (minute hour day-of-month month day-of-week).
 *
 * Syntax: each field is a comma list of items `*`, `a` or `a-b`, each optionally followed by a step `/n`
 * (a step needs `*` or a range, as in node-cron); months and weekdays also take English names (`jan`,
 * `mon`); weekday 0 and 7 are Sunday; `?` is `*` in the day fields. The nicknames
 * `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly` are accepted. Not
 * supported (rejected): a seconds field, `L`, `W`, `#`, `@reboot`.
 *
 * Day matching follows POSIX cron: when both day-of-month and day-of-week are restricted (neither starts
 * with `*`), a day matches if either matches; otherwise both must. (node-cron's own scheduler always
 * requires both; the agent schedules from this module, so this is the rule in force.)
 */
export interface CronSchedule {
  readonly source: string;
  /** Sorted, unique. */
  readonly minutes: readonly number[];
  readonly hours: readonly number[];
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 = Sunday … 6 = Saturday. */
  readonly weekdays: ReadonlySet<number>;
  readonly dayOfMonthRestricted: boolean;
  readonly dayOfWeekRestricted: boolean;
}

/**
 * Options of the functions below. `tz` is an IANA time zone name; a cron expression is read in that zone's
 * wall-clock time. Default: the host's zone (`defaultTimeZone()`); pass it explicitly for deterministic results.
 *
 * Daylight-saving time, for a wall time the zone skips or repeats:
 * - skipped (spring forward): the run happens at the same wall time read with the offset before the jump,
 *   i.e. shifted forward by the jump (02:30 in a 02:00→03:00 gap runs at 03:30), as RFC 5545 and
 *   Temporal's "compatible" disambiguation do. A run that lands on another run's instant is one run.
 * - repeated (fall back): an expression that fires in every hour (hour field covers 0–23) runs in both
 *   occurrences, since real time passes; any other runs once, at the first occurrence.
 * So a daily schedule yields exactly one run per local day, whatever the season.
 */
export interface ScheduleOptions {
  tz?: string;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
/** Any valid expression matches within 8 years (29 February); search a little longer. */
const SEARCH_DAYS = 366 * 9;

const NICKNAMES: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};
const MONTH_NAMES = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** The first name maps to this number (months: 1). */
  nameBase?: number;
}
const FIELDS: FieldSpec[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTH_NAMES, nameBase: 1 },
  { name: 'day-of-week', min: 0, max: 7, names: DAY_NAMES, nameBase: 0 },
];

const parsed = new Map<string, CronSchedule>();

function cronError(expr: string, detail: string): StrataError {
  return new StrataError('STRATA_CRON_INVALID', `cron expression "${expr}": ${detail}`, { kind: 'usage' });
}

/** Parses (and caches) a cron expression. Throws StrataError STRATA_CRON_INVALID (kind 'usage') naming the bad field. */
export function parseCron(expr: string): CronSchedule {
  const cached = parsed.get(expr);
  if (cached) return cached;
  const trimmed = expr.trim();
  const text = NICKNAMES[trimmed.toLowerCase()] ?? trimmed;
  if (text.startsWith('@')) throw cronError(expr, `unknown nickname (use one of ${Object.keys(NICKNAMES).join(', ')})`);
  const parts = text.split(/\s+/);
  if (parts.length !== 5) {
    throw cronError(expr, `expected 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}`);
  }
  const values = parts.map((part, i) => parseField(expr, part, FIELDS[i]!));
  const weekdays = new Set([...values[4]!].map((d) => d % 7));
  const schedule: CronSchedule = {
    source: expr,
    minutes: [...values[0]!].sort((a, b) => a - b),
    hours: [...values[1]!].sort((a, b) => a - b),
    daysOfMonth: values[2]!,
    months: values[3]!,
    weekdays,
    dayOfMonthRestricted: !/^[*?]/.test(parts[2]!),
    dayOfWeekRestricted: !/^[*?]/.test(parts[4]!),
  };
  if (!canMatchADay(schedule)) throw cronError(expr, 'no such date (the day of month never occurs in the months given)');
  parsed.set(expr, schedule);
  return schedule;
}

function parseField(expr: string, text: string, spec: FieldSpec): Set<number> {
  const out = new Set<number>();
  for (const item of text.split(',')) {
    const m = /^(\*|\?|[a-z0-9]+(?:-[a-z0-9]+)?)(?:\/(\d+))?$/i.exec(item);
    if (!m) throw cronError(expr, `${spec.name} field "${text}": cannot read "${item}"`);
    const [, range, stepText] = m as unknown as [string, string, string | undefined];
    if (range === '?' && spec.name !== 'day-of-month' && spec.name !== 'day-of-week') {
      throw cronError(expr, `${spec.name} field "${text}": "?" is only allowed in the day fields`);
    }
    let lo: number;
    let hi: number;
    if (range === '*' || range === '?') {
      lo = spec.min;
      hi = spec.name === 'day-of-week' ? 6 : spec.max;
    } else {
      const [a, b] = range.split('-') as [string, string | undefined];
      lo = fieldValue(expr, a, spec, text);
      hi = b === undefined ? lo : fieldValue(expr, b, spec, text);
      if (spec.name === 'day-of-week' && b !== undefined && hi === 0 && lo > 0) hi = 7; // "fri-sun"
      if (b === undefined && stepText !== undefined) {
        throw cronError(expr, `${spec.name} field "${text}": a step needs a range ("a-b/n" or "*/n"), got "${item}"`);
      }
      if (lo > hi) throw cronError(expr, `${spec.name} field "${text}": range ${a}-${b} is backwards`);
    }
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isSafeInteger(step) || step < 1) throw cronError(expr, `${spec.name} field "${text}": step must be at least 1`);
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

function fieldValue(expr: string, token: string, spec: FieldSpec, text: string): number {
  const lower = token.toLowerCase();
  const named = spec.names?.indexOf(lower) ?? -1;
  if (named >= 0) return named + (spec.nameBase ?? 0);
  if (!/^\d+$/.test(token)) throw cronError(expr, `${spec.name} field "${text}": "${token}" is not a number${spec.names ? ' or a name' : ''}`);
  const v = Number(token);
  if (v < spec.min || v > spec.max) throw cronError(expr, `${spec.name} field "${text}": ${v} is out of range ${spec.min}-${spec.max}`);
  return v;
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function canMatchADay(s: CronSchedule): boolean {
  if (s.dayOfWeekRestricted) return true; // some weekday occurs in every month (POSIX "or", or "and" with all days)
  for (const month of s.months) for (const d of s.daysOfMonth) if (d <= daysInMonth(2000, month)) return true;
  return false;
}

/** Whether the local calendar day `dayNumber` (days since 1970-01-01) matches the day fields. */
function dayMatches(s: CronSchedule, dayNumber: number): boolean {
  const date = new Date(dayNumber * DAY_MS);
  if (!s.months.has(date.getUTCMonth() + 1)) return false;
  const dom = s.daysOfMonth.has(date.getUTCDate());
  const dow = s.weekdays.has(date.getUTCDay());
  return s.dayOfMonthRestricted && s.dayOfWeekRestricted ? dom || dow : dom && dow;
}

// ---- time zones (Intl only; no Date local-time methods, which read the host zone) ----

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone: tz,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      });
    } catch (err) {
      throw new StrataError('STRATA_TIMEZONE_INVALID', `unknown time zone "${tz}" (use an IANA name such as Europe/Paris or UTC)`, {
        kind: 'usage',
        cause: err,
      });
    }
    formatters.set(tz, f);
  }
  return f;
}

/** The host's IANA time zone. */
export function defaultTimeZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone ?? 'UTC';
}

/** Throws StrataError STRATA_TIMEZONE_INVALID unless `tz` is a time zone this runtime knows. */
export function assertTimeZone(tz: string): void {
  formatter(tz);
}

/** The wall-clock time of `ms` in `tz`, as if it were a UTC instant (whole seconds). */
function wallClock(ms: number, tz: string): number {
  const parts: Record<string, number> = {};
  for (const p of formatter(tz).formatToParts(new Date(ms))) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  return Date.UTC(parts['year']!, parts['month']! - 1, parts['day']!, parts['hour']!, parts['minute']!, parts['second']!);
}

/** UTC offset of `tz` at instant `ms`, in ms (wall − UTC). */
function offsetAt(ms: number, tz: string): number {
  const whole = Math.floor(ms / 1000) * 1000;
  return wallClock(whole, tz) - whole;
}

/** The local calendar day (days since 1970-01-01) of instant `ms` in `tz`. */
export function localDayNumber(ms: number, tz: string): number {
  return Math.floor(wallClock(ms, tz) / DAY_MS);
}

/** The instants at which the schedule fires on local day `dayNumber`, ascending, without duplicates. */
function runsOnDay(s: CronSchedule, dayNumber: number, tz: string): number[] {
  if (!dayMatches(s, dayNumber)) return [];
  const dayStart = dayNumber * DAY_MS;
  // Offsets a day before and a day after the local day: equal unless a transition is near.
  const before = offsetAt(dayStart - DAY_MS, tz);
  const after = offsetAt(dayStart + 2 * DAY_MS, tz);
  const out: number[] = [];
  if (before === after) {
    for (const h of s.hours) for (const m of s.minutes) out.push(dayStart + h * HOUR_MS + m * MINUTE_MS - before);
    return out;
  }
  const everyHour = s.hours.length === 24;
  for (const h of s.hours) {
    for (const m of s.minutes) {
      const wall = dayStart + h * HOUR_MS + m * MINUTE_MS;
      const candidates = [wall - before, wall - after].filter((c) => wallClock(c, tz) === wall);
      const unique = [...new Set(candidates)].sort((a, b) => a - b);
      if (unique.length === 0) out.push(wall - before); // skipped wall time: shift forward by the gap
      else if (everyHour) out.push(...unique);
      else out.push(unique[0]!);
    }
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

function tzOf(tz: string | ScheduleOptions | undefined): string {
  const name = typeof tz === 'string' ? tz : tz?.tz;
  const zone = name ?? defaultTimeZone();
  formatter(zone);
  return zone;
}

/**
 * The first run strictly after `after` (epoch ms), in epoch ms. `tz` is a zone name or options.
 * Always defined: a parsed expression matches some day within 8 years.
 */
export function nextRun(expr: string | CronSchedule, after: number, tz?: string | ScheduleOptions): number {
  const s = typeof expr === 'string' ? parseCron(expr) : expr;
  const zone = tzOf(tz);
  const first = localDayNumber(after, zone) - 1;
  for (let day = first; day < first + SEARCH_DAYS; day++) {
    for (const run of runsOnDay(s, day, zone)) if (run > after) return run;
  }
  throw new StrataError('STRATA_CRON_INVALID', `cron expression "${s.source}" has no run in the next ${SEARCH_DAYS} days`, { kind: 'usage' });
}

export interface RunsBetweenOptions extends ScheduleOptions {
  /** At most this many runs are returned (the earliest). Default 10 000. */
  limit?: number;
}

/** The runs in the half-open window (from, to], ascending, at most `limit` of them (the earliest). */
export function runsBetween(expr: string | CronSchedule, from: number, to: number, options: string | RunsBetweenOptions = {}): number[] {
  const s = typeof expr === 'string' ? parseCron(expr) : expr;
  const opts = typeof options === 'string' ? { tz: options } : options;
  const zone = tzOf(opts);
  const limit = opts.limit ?? 10_000;
  const out: number[] = [];
  if (to <= from || limit <= 0) return out;
  const last = localDayNumber(to, zone) + 1;
  for (let day = localDayNumber(from, zone) - 1; day <= last; day++) {
    for (const run of runsOnDay(s, day, zone)) {
      if (run <= from || run > to) continue;
      out.push(run);
      if (out.length >= limit) return out;
    }
  }
  return out;
}

export interface MissedRunsOptions extends ScheduleOptions {
  /** At most this many runs are returned (the latest). Default 1 000. */
  limit?: number;
}

/**
 * The runs that came due while nothing ran them: those in (lastRunAt, now], ascending; when there are
 * more than `limit`, the latest `limit`. They are to be recorded as missed, never replayed; the next run
 * to schedule is `nextRun(expr, now)`.
 *
 * `lastRunAt` is the last scheduled time already accounted for (run, skipped or recorded as missed) — or,
 * for a schedule that never ran, the time it was set up — so that calling this again records nothing twice.
 */
export function missedRuns(expr: string | CronSchedule, lastRunAt: number, now: number, options: string | MissedRunsOptions = {}): number[] {
  const s = typeof expr === 'string' ? parseCron(expr) : expr;
  const opts = typeof options === 'string' ? { tz: options } : options;
  const zone = tzOf(opts);
  const limit = opts.limit ?? 1000;
  if (now <= lastRunAt || limit <= 0) return [];
  const out: number[] = [];
  const last = localDayNumber(now, zone) + 1;
  for (let day = localDayNumber(lastRunAt, zone) - 1; day <= last; day++) {
    for (const run of runsOnDay(s, day, zone)) {
      if (run <= lastRunAt || run > now) continue;
      out.push(run);
      if (out.length > limit) out.shift();
    }
  }
  return out;
}

/** The most runs the schedule makes on one local day (one more on a fall-back day if it fires every hour). */
export function maxRunsPerDay(expr: string | CronSchedule): number {
  const s = typeof expr === 'string' ? parseCron(expr) : expr;
  return s.hours.length * s.minutes.length;
}

const bounds = new Map<string, { min: number; max: number }>();

/**
 * The shortest and longest time between two consecutive runs, in ms, in wall-clock time (daylight-saving
 * jumps, which stretch or shrink one interval by an hour, are not counted). Computed over a 28-year
 * calendar cycle, so month and weekday restrictions count (a weekly schedule's maximum is 7 days).
 * A schedule with one run a day has min = max = 24 h.
 */
export function intervalBounds(expr: string | CronSchedule): { min: number; max: number } {
  const s = typeof expr === 'string' ? parseCron(expr) : expr;
  const cached = bounds.get(s.source);
  if (cached) return cached;
  const times = s.hours.flatMap((h) => s.minutes.map((m) => h * 60 + m));
  let min = Infinity;
  let max = 0;
  for (let i = 1; i < times.length; i++) {
    const gap = times[i]! - times[i - 1]!;
    min = Math.min(min, gap);
    max = Math.max(max, gap);
  }
  const start = Date.UTC(2000, 0, 1) / DAY_MS;
  let previous: number | null = null;
  for (let day = start; day < start + 28 * 366; day++) {
    if (!dayMatches(s, day)) continue;
    if (previous !== null) {
      const gap = (day - previous) * 1440 + times[0]! - times[times.length - 1]!;
      min = Math.min(min, gap);
      max = Math.max(max, gap);
    }
    previous = day;
  }
  const result = { min: min * MINUTE_MS, max: max * MINUTE_MS };
  bounds.set(s.source, result);
  return result;
}

/** The shortest time between two consecutive runs, in ms (see intervalBounds). */
export function minimumInterval(expr: string | CronSchedule): number {
  return intervalBounds(expr).min;
}

/** The longest time between two consecutive runs, in ms (see intervalBounds). */
export function maximumInterval(expr: string | CronSchedule): number {
  return intervalBounds(expr).max;
}
