import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StrataError } from '../errors.js';
import {
  assertTimeZone,
  intervalBounds,
  maxRunsPerDay,
  maximumInterval,
  minimumInterval,
  missedRuns,
  nextRun,
  parseCron,
  runsBetween,
} from './schedule.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const utc = (iso: string) => Date.parse(iso.endsWith('Z') ? iso : `${iso}Z`);
const iso = (ms: number) => new Date(ms).toISOString();

describe('parseCron', () => {
  it.each([
    ['*/15 * * * *', { minutes: [0, 15, 30, 45], hours: 24 }],
    ['0 21 * * *', { minutes: [0], hours: 1 }],
    ['0,30 9-17 * * 1-5', { minutes: [0, 30], hours: 9 }],
    ['1-10/3 * * * *', { minutes: [1, 4, 7, 10], hours: 24 }],
    ['@daily', { minutes: [0], hours: 1 }],
    ['  0   0   *  *  SUN ', { minutes: [0], hours: 1 }],
  ])('%s', (expr, want) => {
    const s = parseCron(expr);
    expect(s.minutes).toEqual(want.minutes);
    expect(s.hours).toHaveLength(want.hours);
  });

  it('reads names, 7 as Sunday and "fri-sun"', () => {
    expect([...parseCron('0 0 * jan,DEC mon-fri').months]).toEqual([1, 12]);
    expect([...parseCron('0 0 * * mon-fri').weekdays]).toEqual([1, 2, 3, 4, 5]);
    expect([...parseCron('0 0 * * 7').weekdays]).toEqual([0]);
    expect([...parseCron('0 0 * * fri-sun').weekdays].sort()).toEqual([0, 5, 6]);
  });

  it.each([
    ['* * * *', /expected 5 fields/],
    ['0 0 * * * *', /expected 5 fields/],
    ['60 * * * *', /minute field "60": 60 is out of range 0-59/],
    ['0 24 * * *', /hour field "24": 24 is out of range 0-23/],
    ['0 0 0 * *', /day-of-month field "0"/],
    ['0 0 * 13 *', /month field "13"/],
    ['0 0 * * 8', /day-of-week field "8"/],
    ['*/0 * * * *', /step must be at least 1/],
    ['5/15 * * * *', /a step needs a range/],
    ['10-5 * * * *', /backwards/],
    ['0 0 L * *', /not a number/],
    ['0 0 * * 1#2', /cannot read/],
    ['0 0 30 2 *', /no such date/],
    ['? * * * *', /only allowed in the day fields/],
    ['@reboot', /unknown nickname/],
    ['0 0 * foo *', /"foo" is not a number or a name/],
  ])('rejects %s', (expr, message) => {
    let caught: unknown;
    try {
      parseCron(expr);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(StrataError);
    expect((caught as StrataError).code).toBe('STRATA_CRON_INVALID');
    expect((caught as StrataError).kind).toBe('usage');
    expect((caught as Error).message).toMatch(message);
  });
});

describe('nextRun (UTC)', () => {
  it.each([
    ['*/15 * * * *', '2026-05-04T10:07:00', '2026-05-04T10:15:00.000Z'],
    ['*/15 * * * *', '2026-05-04T10:15:00', '2026-05-04T10:30:00.000Z'], // strictly after
    ['*/15 * * * *', '2026-05-04T23:59:30', '2026-05-05T00:00:00.000Z'],
    ['0 21 * * *', '2026-05-04T21:00:00', '2026-05-05T21:00:00.000Z'],
    ['0 21 * * *', '2026-05-04T20:59:59.999', '2026-05-04T21:00:00.000Z'],
    ['0 0 * * mon-fri', '2026-05-08T12:00:00', '2026-05-11T00:00:00.000Z'], // Friday → Monday
    ['0 0 29 2 *', '2025-01-01T00:00:00', '2028-02-29T00:00:00.000Z'],
    ['0 0 1 * *', '2026-12-15T00:00:00', '2027-01-01T00:00:00.000Z'],
    // both day fields restricted: the 13th OR a Friday
    ['0 0 13 * 5', '2026-05-09T00:00:00', '2026-05-13T00:00:00.000Z'],
    ['0 0 13 * 5', '2026-05-13T00:00:00', '2026-05-15T00:00:00.000Z'],
    // day-of-week given with "*" day-of-month: AND (every Friday)
    ['0 0 * * 5', '2026-05-09T00:00:00', '2026-05-15T00:00:00.000Z'],
    ['@hourly', '2026-05-04T10:00:00', '2026-05-04T11:00:00.000Z'],
  ])('%s after %s → %s', (expr, after, want) => {
    expect(iso(nextRun(expr, utc(after), 'UTC'))).toBe(want);
  });

  it('agrees with a minute-by-minute search (property)', () => {
    const field = (lo: number, hi: number) =>
      fc.oneof(
        fc.constant('*'),
        fc.integer({ min: lo, max: hi }).map(String),
        fc.tuple(fc.integer({ min: lo, max: hi }), fc.integer({ min: lo, max: hi })).map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`),
        fc.integer({ min: 1, max: 20 }).map((n) => `*/${n}`),
      );
    const exprArb = fc.tuple(field(0, 59), field(0, 23), fc.constant('*'), fc.constant('*'), field(0, 6)).map((f) => f.join(' '));
    fc.assert(
      fc.property(exprArb, fc.integer({ min: utc('2024-01-01T00:00:00'), max: utc('2030-01-01T00:00:00') }), (expr, after) => {
        const s = parseCron(expr);
        const next = nextRun(s, after, 'UTC');
        let t = Math.floor(after / MIN) * MIN + MIN;
        for (; t < next; t += MIN) {
          const d = new Date(t);
          const hit = s.minutes.includes(d.getUTCMinutes()) && s.hours.includes(d.getUTCHours()) && s.weekdays.has(d.getUTCDay());
          if (hit) return false;
        }
        const d = new Date(next);
        return next > after && s.minutes.includes(d.getUTCMinutes()) && s.hours.includes(d.getUTCHours()) && s.weekdays.has(d.getUTCDay());
      }),
      { numRuns: 200, seed: 42 },
    );
  });
});

describe('time zones', () => {
  it('reads the expression in the zone', () => {
    expect(iso(nextRun('0 21 * * *', utc('2026-01-10T00:00:00'), 'Europe/Paris'))).toBe('2026-01-10T20:00:00.000Z');
    expect(iso(nextRun('0 21 * * *', utc('2026-07-10T00:00:00'), { tz: 'Europe/Paris' }))).toBe('2026-07-10T19:00:00.000Z');
    expect(iso(nextRun('0 21 * * *', utc('2026-07-10T00:00:00'), 'America/New_York'))).toBe('2026-07-10T01:00:00.000Z'); // 21:00 EDT on the 9th
    // A local day that starts before the UTC one (NZST, UTC+12): Monday 13 July 09:00
    expect(iso(nextRun('0 9 * * 1', utc('2026-07-10T00:00:00'), 'Pacific/Auckland'))).toBe('2026-07-12T21:00:00.000Z');
  });

  it('rejects an unknown zone', () => {
    expect(() => nextRun('0 0 * * *', 0, 'Mars/Olympus')).toThrow(/unknown time zone "Mars\/Olympus"/);
    expect(() => assertTimeZone('Europe/Paris')).not.toThrow();
  });
});

describe('daylight-saving time', () => {
  // Europe/Paris: spring forward 2026-03-29 02:00 CET → 03:00 CEST; fall back 2026-10-25 03:00 CEST → 02:00 CET.
  const tz = 'Europe/Paris';

  const perLocalDay = (runs: number[]) => {
    const days = new Map<string, number>();
    const fmt = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' });
    for (const r of runs) days.set(fmt.format(r), (days.get(fmt.format(r)) ?? 0) + 1);
    return days;
  };

  it.each([
    { name: 'spring forward', from: '2026-03-26T12:00:00', to: '2026-04-01T12:00:00', special: '2026-03-29T01:30:00.000Z' },
    { name: 'fall back', from: '2026-10-22T12:00:00', to: '2026-10-28T12:00:00', special: '2026-10-25T00:30:00.000Z' },
  ])('a daily 02:30 runs exactly once per day across $name', ({ from, to, special }) => {
    const runs = runsBetween('30 2 * * *', utc(from), utc(to), tz);
    expect(runs).toHaveLength(6);
    expect([...perLocalDay(runs).values()]).toEqual([1, 1, 1, 1, 1, 1]);
    expect(runs.map(iso)).toContain(special);
  });

  it('the skipped 02:30 runs at 03:30 CEST; the repeated 02:30 runs at its first occurrence', () => {
    expect(iso(nextRun('30 2 * * *', utc('2026-03-28T12:00:00'), tz))).toBe('2026-03-29T01:30:00.000Z'); // 03:30 CEST
    expect(iso(nextRun('30 2 * * *', utc('2026-10-24T12:00:00'), tz))).toBe('2026-10-25T00:30:00.000Z'); // 02:30 CEST
    expect(iso(nextRun('30 2 * * *', utc('2026-10-25T00:30:00'), tz))).toBe('2026-10-26T01:30:00.000Z'); // no second 02:30 CET
  });

  it.each([
    { name: 'spring forward (23 h day)', day: ['2026-03-28T23:00:00', '2026-03-29T22:00:00'], count: 92 },
    { name: 'fall back (25 h day)', day: ['2026-10-24T22:00:00', '2026-10-25T23:00:00'], count: 100 },
  ])('every 15 minutes keeps real 15-minute steps across $name', ({ day, count }) => {
    const runs = runsBetween('*/15 * * * *', utc(day[0]!) - 1, utc(day[1]!) - 1, tz);
    expect(runs).toHaveLength(count);
    for (let i = 1; i < runs.length; i++) expect(runs[i]! - runs[i - 1]!).toBe(15 * MIN);
  });

  it('any daily schedule runs once per local day for a year, in zones with odd transitions (property)', () => {
    const zones = ['Europe/Paris', 'America/New_York', 'Australia/Lord_Howe', 'America/Santiago', 'America/Havana', 'UTC'];
    fc.assert(
      fc.property(fc.constantFrom(...zones), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), (zone, h, m) => {
        const from = utc('2026-01-01T12:00:00');
        const runs = runsBetween(`${m} ${h} * * *`, from, from + 365 * DAY, zone);
        const fmt = new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' });
        const days = runs.map((r) => fmt.format(r));
        return runs.length >= 364 && runs.length <= 366 && new Set(days).size === runs.length;
      }),
      { numRuns: 60, seed: 7 },
    );
  });

  it('a daily 01:30 in New York runs once on the day 01:00–02:00 repeats', () => {
    const runs = runsBetween('30 1 * * *', utc('2026-10-31T12:00:00'), utc('2026-11-02T12:00:00'), 'America/New_York');
    expect(runs.map(iso)).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z']);
  });
});

describe('runsBetween', () => {
  it('is half-open (from, to] and bounded', () => {
    const from = utc('2026-05-04T10:00:00');
    expect(runsBetween('*/15 * * * *', from, from + HOUR, 'UTC').map(iso)).toEqual([
      '2026-05-04T10:15:00.000Z',
      '2026-05-04T10:30:00.000Z',
      '2026-05-04T10:45:00.000Z',
      '2026-05-04T11:00:00.000Z',
    ]);
    expect(runsBetween('*/15 * * * *', from, from + 10 * DAY, { tz: 'UTC', limit: 3 })).toHaveLength(3);
    expect(runsBetween('*/15 * * * *', from, from, 'UTC')).toEqual([]);
  });
});

describe('missedRuns', () => {
  const expr = '0 21 * * *';
  it.each([
    { name: 'down three days', last: '2026-01-01T20:00:00', now: '2026-01-04T22:00:00', want: ['01', '02', '03', '04'] },
    { name: 'the last run itself is not missed', last: '2026-01-01T21:00:00', now: '2026-01-02T20:00:00', want: [] },
    { name: 'a run due exactly now is missed', last: '2026-01-01T21:00:00', now: '2026-01-02T21:00:00', want: ['02'] },
    { name: 'clock before the last run', last: '2026-01-05T21:00:00', now: '2026-01-02T21:00:00', want: [] },
  ])('$name', ({ last, now, want }) => {
    const runs = missedRuns(expr, utc(last), utc(now), 'UTC');
    expect(runs.map((r) => iso(r).slice(8, 10))).toEqual(want);
    for (const r of runs) expect(iso(r).slice(11, 16)).toBe('21:00');
  });

  it('keeps the latest runs when there are more than the limit', () => {
    const runs = missedRuns(expr, utc('2026-01-01T00:00:00'), utc('2026-12-31T23:00:00'), { tz: 'UTC', limit: 2 });
    expect(runs.map(iso)).toEqual(['2026-12-30T21:00:00.000Z', '2026-12-31T21:00:00.000Z']);
  });

  it('then schedules the next run after now, never replaying', () => {
    const now = utc('2026-01-04T22:00:00');
    expect(iso(nextRun(expr, now, 'UTC'))).toBe('2026-01-05T21:00:00.000Z');
  });
});

describe('intervals', () => {
  it.each([
    ['*/15 * * * *', 15 * MIN, 15 * MIN],
    ['0,5 * * * *', 5 * MIN, 55 * MIN],
    ['*/40 * * * *', 20 * MIN, 40 * MIN],
    ['0 */2 * * *', 2 * HOUR, 2 * HOUR],
    ['0 21 * * *', DAY, DAY],
    ['0 9,17 * * *', 8 * HOUR, 16 * HOUR],
    ['0 0 * * 0', 7 * DAY, 7 * DAY],
    ['0 0 * * 1-5', DAY, 3 * DAY],
    ['0 0 1 * *', 28 * DAY, 31 * DAY],
    ['*/15 8-17 * * *', 15 * MIN, 14 * HOUR + 15 * MIN],
  ])('%s: min %d, max %d', (expr, min, max) => {
    expect(intervalBounds(expr)).toEqual({ min, max });
    expect(minimumInterval(expr)).toBe(min);
    expect(maximumInterval(expr)).toBe(max);
  });

  it.each([
    ['0 21 * * *', 1],
    ['0 9,21 * * *', 2],
    ['0,30 21 * * *', 2],
    ['0 9,12,21 * * *', 3],
    ['*/15 * * * *', 96],
  ])('%s runs at most %d times a day', (expr, n) => {
    expect(maxRunsPerDay(expr)).toBe(n);
  });
});
