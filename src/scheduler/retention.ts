// Retention: which recovery points a policy keeps and which it lets go. Pure; prune acts on the answer.
import type { ProtectionGroupConfig } from '../config/types.js';
import { defaultTimeZone, localDayNumber } from './schedule.js';

export type Copy = 'disk' | 'cloud';

/** The fields retention looks at; callers pass richer objects through unchanged. */
export interface RecoveryPointRef {
  id: string;
  /** Protection group name. */
  group: string;
  /** Data source (its path) within the group. */
  source: string;
  /** Epoch ms of the recovery point. */
  time: number;
  copy: Copy;
}

export interface RetentionPolicy {
  /** Disk copies are kept this many days (1–448). Absent or null: disk copies are all kept. */
  disk?: { retentionDays: number } | null;
  /**
   * Cloud copies, grandfather-father-son: each count is how many of the most recent days, ISO weeks,
   * months or years keep their newest recovery point (the current period counts as the first).
   * Absent or null (online protection off): cloud copies are all kept.
   */
  online?: { daily: number; weekly?: number; monthly?: number; yearly?: number } | null;
}

/**
 * Why a point is kept: `latest` (newest of its data source and copy: always kept), `disk` (within the
 * disk retention), `daily`/`weekly`/`monthly`/`yearly` (newest of a period the online retention covers),
 * `no-policy` (no policy for its group or copy: nothing is removed without one).
 */
export type KeepReason = 'latest' | 'disk' | 'daily' | 'weekly' | 'monthly' | 'yearly' | 'no-policy';

export interface RetentionResult<P extends RecoveryPointRef> {
  /** In input order; `reasons` is never empty. */
  keep: { point: P; reasons: KeepReason[] }[];
  /** In input order. */
  remove: P[];
}

export interface RetentionOptions {
  now: number;
  /** One policy for every group, or a lookup by group name (undefined: the group's points are all kept). */
  policy: RetentionPolicy | ((group: string) => RetentionPolicy | undefined);
  /** IANA zone whose calendar defines days, weeks, months and years. Default: the host's zone. */
  tz?: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** The retention policy a protection group's config describes. */
export function policyFromConfig(group: Pick<ProtectionGroupConfig, 'disk' | 'online'>): RetentionPolicy {
  return { disk: { retentionDays: group.disk.retentionDays }, online: group.online ? { ...group.online.retention } : null };
}

/**
 * Decides, for each recovery point, keep or remove. A point is kept if any rule keeps it:
 * - the newest point of each (group, source, copy) is always kept, whatever the retention;
 * - a disk point is kept while `now - time <= retentionDays` days (a point from the future is kept);
 * - a cloud point is kept if it is the newest of its (group, source) in a day among the last `daily`
 *   local days, an ISO week (Monday to Sunday) among the last `weekly`, a month among the last `monthly`
 *   or a year among the last `yearly`. Ties in time are broken by the greater id.
 * Every input point appears exactly once, in `keep` or in `remove`.
 */
export function applyRetention<P extends RecoveryPointRef>(points: readonly P[], options: RetentionOptions): RetentionResult<P> {
  const tz = options.tz ?? defaultTimeZone();
  const policyOf = typeof options.policy === 'function' ? options.policy : () => options.policy as RetentionPolicy;
  const reasons = new Map<P, Set<KeepReason>>();
  const add = (p: P, r: KeepReason) => {
    let set = reasons.get(p);
    if (!set) reasons.set(p, (set = new Set()));
    set.add(r);
  };
  const newer = (a: P, b: P) => a.time > b.time || (a.time === b.time && a.id > b.id);

  const bySeries = new Map<string, P[]>();
  for (const p of points) {
    const key = JSON.stringify([p.group, p.source, p.copy]);
    const series = bySeries.get(key);
    if (series) series.push(p);
    else bySeries.set(key, [p]);
  }

  const nowDay = localDayNumber(options.now, tz);
  const nowCal = calendar(nowDay);
  for (const series of bySeries.values()) {
    const first = series[0]!;
    let latest = first;
    for (const p of series) if (newer(p, latest)) latest = p;
    add(latest, 'latest');

    const policy = policyOf(first.group);
    if (first.copy === 'disk') {
      const days = policy?.disk?.retentionDays;
      if (days === undefined) {
        for (const p of series) add(p, 'no-policy');
        continue;
      }
      for (const p of series) if (options.now - p.time <= days * DAY_MS) add(p, 'disk');
      continue;
    }

    const online = policy?.online;
    if (!online) {
      for (const p of series) add(p, 'no-policy');
      continue;
    }
    const rules: { reason: KeepReason; count: number; period: (c: Calendar) => number }[] = [
      { reason: 'daily', count: online.daily, period: (c) => c.day },
      { reason: 'weekly', count: online.weekly ?? 0, period: (c) => c.week },
      { reason: 'monthly', count: online.monthly ?? 0, period: (c) => c.month },
      { reason: 'yearly', count: online.yearly ?? 0, period: (c) => c.year },
    ];
    const cals = new Map(series.map((p) => [p, calendar(localDayNumber(p.time, tz))]));
    for (const rule of rules) {
      if (rule.count <= 0) continue;
      const newestInPeriod = new Map<number, P>();
      for (const p of series) {
        const period = rule.period(cals.get(p)!);
        if (rule.period(nowCal) - period >= rule.count) continue; // period older than the rule covers
        const best = newestInPeriod.get(period);
        if (!best || newer(p, best)) newestInPeriod.set(period, p);
      }
      for (const p of newestInPeriod.values()) add(p, rule.reason);
    }
  }

  const result: RetentionResult<P> = { keep: [], remove: [] };
  const order: KeepReason[] = ['latest', 'disk', 'daily', 'weekly', 'monthly', 'yearly', 'no-policy'];
  for (const p of points) {
    const set = reasons.get(p);
    if (set && set.size > 0) result.keep.push({ point: p, reasons: order.filter((r) => set.has(r)) });
    else result.remove.push(p);
  }
  return result;
}

/** Monotonic period numbers of a local calendar day. */
interface Calendar {
  day: number;
  /** ISO weeks (Monday first), counted from the week of 1970-01-01. */
  week: number;
  month: number;
  year: number;
}

function calendar(dayNumber: number): Calendar {
  const d = new Date(dayNumber * DAY_MS);
  const year = d.getUTCFullYear();
  // 1970-01-01 was a Thursday; +3 aligns weeks on Mondays.
  return { day: dayNumber, week: Math.floor((dayNumber + 3) / 7), month: year * 12 + d.getUTCMonth(), year };
}
