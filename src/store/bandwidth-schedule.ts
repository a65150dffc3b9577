// Bandwidth limits by time of week (pure): the config's throttle turned into "bytes per second allowed now".
import { StrataError } from '../errors.js';

/** The config's `throttle` (see src/config/types.ts ThrottleConfig); repeated here so `store` imports nothing above it. */
export interface ThrottleSettings {
  /** "HH:MM-HH:MM" local time; the end may be "24:00"; a window may cross midnight ("22:00-06:00"). */
  workHours: string;
  /** Day names as ranges or a comma list: "mon-fri", "mon,wed,fri", "fri-mon", "mon-wed,sat". */
  workDays: string;
  /** Megabits per second; 0 or absent means unlimited. */
  workMbps?: number;
  otherMbps?: number;
}

export interface BandwidthSchedule {
  /** Minutes after midnight, [0, 1440). */
  readonly workStart: number;
  /** Minutes after midnight, (0, 1440]; less than workStart for a window crossing midnight. */
  readonly workEnd: number;
  /** Days (0 = Sunday … 6 = Saturday) on which a work window starts. */
  readonly workDays: ReadonlySet<number>;
  /** Bytes per second; Infinity for unlimited. */
  readonly workBytesPerSecond: number;
  readonly otherBytesPerSecond: number;
  /** An IANA zone for "local time"; undefined means the host's. */
  readonly timeZone: string | undefined;
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
/** One megabit per second in bytes per second (decimal megabits, as network links are sold). */
export const BYTES_PER_SECOND_PER_MBPS = 125_000;

function invalid(message: string): StrataError {
  return new StrataError('STRATA_CONFIG_INVALID', `throttle: ${message}`, { kind: 'usage' });
}

/**
 * Validates the throttle settings and returns the schedule. Throws StrataError STRATA_CONFIG_INVALID
 * (kind 'usage') naming the bad field. Equal start and end times are refused (an empty window).
 */
export function parseBandwidthSchedule(settings: ThrottleSettings, options: { timeZone?: string } = {}): BandwidthSchedule {
  const hours = /^(\d{2}):(\d{2})-(\d{2}):(\d{2})$/.exec(settings.workHours.trim());
  if (!hours) throw invalid(`workHours "${settings.workHours}" must be "HH:MM-HH:MM", such as "08:00-18:00"`);
  const [, h1, m1, h2, m2] = hours.map(Number) as [number, number, number, number, number];
  const workStart = h1 * 60 + m1;
  const workEnd = h2 * 60 + m2;
  if (h1 > 23 || m1 > 59 || m2 > 59 || workEnd > 24 * 60) throw invalid(`workHours "${settings.workHours}" is not a time of day`);
  if (workStart === workEnd % (24 * 60)) throw invalid(`workHours "${settings.workHours}" is an empty window`);
  return {
    workStart,
    workEnd,
    workDays: parseDays(settings.workDays),
    workBytesPerSecond: rate('workMbps', settings.workMbps),
    otherBytesPerSecond: rate('otherMbps', settings.otherMbps),
    timeZone: options.timeZone,
  };
}

/**
 * The bytes per second allowed at `at` (Infinity when unlimited). A window that crosses midnight
 * belongs to the day it starts on: with "22:00-06:00" on "mon-fri", Saturday 01:00 is work time
 * (Friday's window) and Monday 01:00 is not.
 */
export function bytesPerSecondAt(schedule: BandwidthSchedule, at: number | Date): number {
  return isWorkTime(schedule, at) ? schedule.workBytesPerSecond : schedule.otherBytesPerSecond;
}

export function isWorkTime(schedule: BandwidthSchedule, at: number | Date): boolean {
  const { day, minute } = localDayMinute(at, schedule.timeZone);
  const { workStart: start, workEnd: end, workDays: days } = schedule;
  if (start < end) return days.has(day) && minute >= start && minute < end;
  return (days.has(day) && minute >= start) || (days.has((day + 6) % 7) && minute < end);
}

function rate(field: string, mbps: number | undefined): number {
  if (mbps === undefined || mbps === 0) return Infinity;
  if (!(typeof mbps === 'number' && Number.isFinite(mbps) && mbps > 0)) throw invalid(`${field} must be a positive number of megabits per second, or 0 for unlimited`);
  return mbps * BYTES_PER_SECOND_PER_MBPS;
}

function parseDays(text: string): Set<number> {
  const days = new Set<number>();
  for (const part of text.toLowerCase().split(',').map((p) => p.trim())) {
    const [from, to, extra] = part.split('-');
    const a = DAYS.indexOf(from ?? '');
    const b = to === undefined ? a : DAYS.indexOf(to);
    if (a < 0 || b < 0 || extra !== undefined) throw invalid(`workDays "${text}" must list day names (mon, tue, …) or ranges such as "mon-fri"`);
    for (let d = a; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === b) break;
    }
  }
  return days;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The weekday (0 = Sunday) and minute of the day at `at` in `timeZone` (the host's when undefined). */
function localDayMinute(at: number | Date, timeZone: string | undefined): { day: number; minute: number } {
  const key = timeZone ?? '';
  let format = formatters.get(key);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(key, format);
  }
  const parts = format.formatToParts(typeof at === 'number' ? new Date(at) : at);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  const day = DAYS.indexOf(get('weekday').toLowerCase().slice(0, 3));
  return { day, minute: Number(get('hour')) * 60 + Number(get('minute')) };
}
