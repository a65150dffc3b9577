import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyRetention, policyFromConfig, type Copy, type RecoveryPointRef, type RetentionPolicy } from './retention.js';

const DAY = 24 * 60 * 60 * 1000;
const NOW = Date.parse('2026-06-17T12:00:00Z'); // a Wednesday; its ISO week runs 15–21 June

/** A point named by its time ("2026-06-16T21:00"), so expectations read as dates. */
function pt(time: string, opts: { copy?: Copy; group?: string; source?: string; id?: string } = {}): RecoveryPointRef {
  const t = Date.parse(`${time}Z`);
  return { id: opts.id ?? time, group: opts.group ?? 'fileserver', source: opts.source ?? '/srv/data', time: t, copy: opts.copy ?? 'disk' };
}

/** One point a day at `hh:mm` UTC, from `from` to `to` inclusive (dates as YYYY-MM-DD). */
function daily(from: string, to: string, copy: Copy, hhmm = '21:00'): RecoveryPointRef[] {
  const out: RecoveryPointRef[] = [];
  for (let t = Date.parse(`${from}T${hhmm}Z`); t <= Date.parse(`${to}T${hhmm}Z`); t += DAY) {
    out.push(pt(new Date(t).toISOString().slice(0, 16), { copy }));
  }
  return out;
}

function kept(points: RecoveryPointRef[], policy: RetentionPolicy | ((g: string) => RetentionPolicy | undefined), tz = 'UTC') {
  const result = applyRetention(points, { now: NOW, policy, tz });
  expect(result.keep.length + result.remove.length).toBe(points.length);
  return Object.fromEntries(result.keep.map((k) => [k.point.id, k.reasons.join(',')]));
}

describe('disk retention', () => {
  it.each([
    {
      name: 'keeps what is within the days, the boundary included',
      points: [pt('2026-06-16T12:00'), pt('2026-06-03T12:00'), pt('2026-06-03T11:59'), pt('2026-05-01T00:00')],
      want: { '2026-06-16T12:00': 'latest,disk', '2026-06-03T12:00': 'disk' },
    },
    {
      name: 'everything expired but the latest stays',
      points: [pt('2026-01-01T00:00'), pt('2026-02-01T00:00'), pt('2026-03-01T00:00')],
      want: { '2026-03-01T00:00': 'latest' },
    },
    {
      name: 'the latest of each data source stays',
      points: [pt('2026-01-01T00:00', { source: '/a' }), pt('2026-02-01T00:00', { source: '/a' }), pt('2026-01-15T00:00', { source: '/b' })],
      want: { '2026-02-01T00:00': 'latest', '2026-01-15T00:00': 'latest' },
    },
    {
      name: 'a point from the future is kept',
      points: [pt('2026-06-18T00:00'), pt('2026-06-17T00:00')],
      want: { '2026-06-18T00:00': 'latest,disk', '2026-06-17T00:00': 'disk' },
    },
    {
      name: 'equal times: the greater id is the latest',
      points: [pt('2026-01-01T00:00', { id: 'a' }), pt('2026-01-01T00:00', { id: 'b' })],
      want: { b: 'latest' },
    },
  ])('$name', ({ points, want }) => {
    expect(kept(points, { disk: { retentionDays: 14 } })).toEqual(want);
  });

  it('an empty list keeps and removes nothing', () => {
    expect(applyRetention([], { now: NOW, policy: {}, tz: 'UTC' })).toEqual({ keep: [], remove: [] });
  });
});

describe('online retention (GFS)', () => {
  const cloud = (from: string, to: string) => daily(from, to, 'cloud');

  it.each([
    {
      name: 'daily 7: the newest point of each of the last 7 days (today counts)',
      points: [...cloud('2026-06-01', '2026-06-16'), pt('2026-06-16T09:00', { copy: 'cloud' })],
      policy: { daily: 7 },
      want: {
        '2026-06-11T21:00': 'daily',
        '2026-06-12T21:00': 'daily',
        '2026-06-13T21:00': 'daily',
        '2026-06-14T21:00': 'daily',
        '2026-06-15T21:00': 'daily',
        '2026-06-16T21:00': 'latest,daily',
      },
    },
    {
      name: 'weekly 4: the newest of each ISO week, Monday to Sunday',
      points: cloud('2026-04-18', '2026-06-16'),
      policy: { daily: 7, weekly: 4 },
      want: {
        '2026-05-31T21:00': 'weekly',
        '2026-06-07T21:00': 'weekly',
        '2026-06-11T21:00': 'daily',
        '2026-06-12T21:00': 'daily',
        '2026-06-13T21:00': 'daily',
        '2026-06-14T21:00': 'daily,weekly',
        '2026-06-15T21:00': 'daily',
        '2026-06-16T21:00': 'latest,daily,weekly',
      },
    },
    {
      name: 'monthly 3 and yearly 2',
      points: cloud('2025-06-01', '2026-06-16'),
      policy: { daily: 1, monthly: 3, yearly: 2 },
      want: {
        '2025-12-31T21:00': 'yearly',
        '2026-04-30T21:00': 'monthly',
        '2026-05-31T21:00': 'monthly',
        '2026-06-16T21:00': 'latest,monthly,yearly',
      },
    },
    {
      name: 'everything expired but the latest stays',
      points: cloud('2020-01-01', '2020-01-10'),
      policy: { daily: 7, weekly: 4, monthly: 3, yearly: 1 },
      want: { '2020-01-10T21:00': 'latest' },
    },
    {
      name: 'a gap in the points keeps only what the periods hold',
      points: [pt('2026-06-01T21:00', { copy: 'cloud' }), pt('2026-06-02T21:00', { copy: 'cloud' }), pt('2026-06-16T21:00', { copy: 'cloud' })],
      policy: { daily: 7, weekly: 3 },
      want: { '2026-06-02T21:00': 'weekly', '2026-06-16T21:00': 'latest,daily,weekly' },
    },
  ])('$name', ({ points, policy, want }) => {
    expect(kept(points, { online: policy })).toEqual(want);
  });

  it('reads days in the given zone', () => {
    const points = [pt('2026-06-15T22:30', { copy: 'cloud' }), pt('2026-06-16T21:00', { copy: 'cloud' }), pt('2026-06-15T21:00', { copy: 'cloud' })];
    // In UTC the 15th keeps its 22:30 point. In Paris (UTC+2) 22:30 UTC is 00:30 on the 16th, beaten there by
    // 21:00 UTC on the 16th (23:00), and the 15th keeps 21:00 UTC (23:00).
    expect(kept(points, { online: { daily: 7 } }, 'UTC')).toEqual({ '2026-06-15T22:30': 'daily', '2026-06-16T21:00': 'latest,daily' });
    expect(kept(points, { online: { daily: 7 } }, 'Europe/Paris')).toEqual({ '2026-06-15T21:00': 'daily', '2026-06-16T21:00': 'latest,daily' });
  });
});

describe('copies, groups and missing policies', () => {
  it('applies disk retention to disk copies and GFS to cloud copies, each with its own latest', () => {
    const points = [
      pt('2026-01-01T21:00', { copy: 'disk', id: 'd-old' }),
      pt('2026-06-16T21:00', { copy: 'disk', id: 'd-new' }),
      pt('2026-01-01T21:00', { copy: 'cloud', id: 'c-old' }),
      pt('2026-03-01T21:00', { copy: 'cloud', id: 'c-mid' }),
    ];
    expect(kept(points, { disk: { retentionDays: 14 }, online: { daily: 7, yearly: 1 } })).toEqual({
      'd-new': 'latest,disk',
      'c-mid': 'latest,yearly',
    });
  });

  it('keeps everything it has no policy for', () => {
    const points = [pt('2020-01-01T00:00', { id: 'a' }), pt('2020-01-02T00:00', { id: 'b' }), pt('2020-01-01T00:00', { id: 'c', copy: 'cloud' })];
    expect(kept(points, {})).toEqual({ a: 'no-policy', b: 'latest,no-policy', c: 'latest,no-policy' });
    expect(kept(points, { disk: { retentionDays: 1 }, online: null })).toEqual({ b: 'latest', c: 'latest,no-policy' });
  });

  it('looks the policy up by group', () => {
    const points = [
      pt('2026-01-01T00:00', { group: 'a', id: 'a1' }),
      pt('2026-06-10T00:00', { group: 'a', id: 'a2' }),
      pt('2026-06-17T00:00', { group: 'a', id: 'a3' }),
      pt('2026-06-10T00:00', { group: 'b', id: 'b1' }),
      pt('2026-06-17T00:00', { group: 'b', id: 'b2' }),
      pt('2026-01-01T00:00', { group: 'gone', id: 'g1' }),
      pt('2026-01-02T00:00', { group: 'gone', id: 'g2' }),
    ];
    const policies: Record<string, RetentionPolicy> = { a: { disk: { retentionDays: 30 } }, b: { disk: { retentionDays: 1 } } };
    expect(kept(points, (g) => policies[g])).toEqual({ a2: 'disk', a3: 'latest,disk', b2: 'latest,disk', g1: 'no-policy', g2: 'latest,no-policy' });
  });

  it('builds a policy from a group config', () => {
    expect(policyFromConfig({ disk: { syncFrequency: '*/15 * * * *', retentionDays: 14 }, online: null })).toEqual({
      disk: { retentionDays: 14 },
      online: null,
    });
    expect(
      policyFromConfig({ disk: { syncFrequency: '*/15 * * * *', retentionDays: 14 }, online: { schedule: '0 21 * * *', retention: { daily: 30, weekly: 12 } } }),
    ).toEqual({ disk: { retentionDays: 14 }, online: { daily: 30, weekly: 12 } });
  });
});

describe('invariants (property)', () => {
  it('every point is kept or removed once; the newest of each series is always kept; a kept point has a reason', () => {
    const pointArb = fc.record({
      id: fc.uuid(),
      group: fc.constantFrom('a', 'b'),
      source: fc.constantFrom('/x', '/y'),
      time: fc.integer({ min: NOW - 800 * DAY, max: NOW + DAY }),
      copy: fc.constantFrom<Copy>('disk', 'cloud'),
    });
    const policyArb = fc.record({
      disk: fc.option(fc.record({ retentionDays: fc.integer({ min: 1, max: 448 }) }), { nil: null }),
      online: fc.option(
        fc.record({ daily: fc.integer({ min: 7, max: 60 }), weekly: fc.integer({ min: 0, max: 10 }), monthly: fc.integer({ min: 0, max: 12 }), yearly: fc.integer({ min: 0, max: 3 }) }),
        { nil: null },
      ),
    });
    fc.assert(
      fc.property(fc.array(pointArb, { maxLength: 60 }), policyArb, (points, policy) => {
        const r = applyRetention(points, { now: NOW, policy, tz: 'Europe/Paris' });
        if (r.keep.length + r.remove.length !== points.length) return false;
        if (r.keep.some((k) => k.reasons.length === 0)) return false;
        const keptSet = new Set<RecoveryPointRef>(r.keep.map((k) => k.point));
        const series = new Map<string, RecoveryPointRef>();
        for (const p of points) {
          const key = `${p.group}|${p.source}|${p.copy}`;
          const cur = series.get(key);
          if (!cur || p.time > cur.time || (p.time === cur.time && p.id > cur.id)) series.set(key, p);
        }
        return [...series.values()].every((p) => keptSet.has(p));
      }),
      { numRuns: 200, seed: 3 },
    );
  });
});
