import { describe, expect, it } from 'vitest';
import { BYTES_PER_SECOND_PER_MBPS, bytesPerSecondAt, isWorkTime, parseBandwidthSchedule, type ThrottleSettings } from './bandwidth-schedule.js';

const MB = BYTES_PER_SECOND_PER_MBPS;
// 2026-03-02 is a Monday.
const at = (day: string, time: string) => Date.parse(`2026-03-${day}T${time}:00Z`);
const days: Record<string, string> = { mon: '02', tue: '03', wed: '04', thu: '05', fri: '06', sat: '07', sun: '08' };

describe('bandwidth schedule', () => {
  const office: ThrottleSettings = { workHours: '08:00-18:00', workDays: 'mon-fri', workMbps: 50, otherMbps: 500 };
  const overnight: ThrottleSettings = { workHours: '22:00-06:00', workDays: 'mon-fri', workMbps: 10, otherMbps: 0 };
  const listed: ThrottleSettings = { workHours: '09:30-24:00', workDays: 'mon,wed,sat', workMbps: 1 };
  const wrapping: ThrottleSettings = { workHours: '00:00-12:00', workDays: 'fri-mon', workMbps: 2, otherMbps: 4 };

  it.each([
    ['office, Monday morning', office, 'mon', '08:00', 50 * MB],
    ['office, just before the end', office, 'fri', '17:59', 50 * MB],
    ['office, the end minute', office, 'fri', '18:00', 500 * MB],
    ['office, before start', office, 'tue', '07:59', 500 * MB],
    ['office, Saturday noon', office, 'sat', '12:00', 500 * MB],
    ['office, Sunday', office, 'sun', '09:00', 500 * MB],
    ['overnight, Monday 23:00', overnight, 'mon', '23:00', 10 * MB],
    ['overnight, Tuesday 05:59 (Monday window)', overnight, 'tue', '05:59', 10 * MB],
    ['overnight, Tuesday 06:00', overnight, 'tue', '06:00', Infinity],
    ['overnight, Monday 01:00 (Sunday had no window)', overnight, 'mon', '01:00', Infinity],
    ['overnight, Saturday 01:00 (Friday window)', overnight, 'sat', '01:00', 10 * MB],
    ['overnight, Saturday 23:00', overnight, 'sat', '23:00', Infinity],
    ['listed, Wednesday 23:59 (to 24:00)', listed, 'wed', '23:59', 1 * MB],
    ['listed, Thursday 00:00', listed, 'thu', '00:00', Infinity],
    ['listed, Tuesday 10:00', listed, 'tue', '10:00', Infinity],
    ['listed, Saturday 09:30', listed, 'sat', '09:30', 1 * MB],
    ['wrapping day range, Sunday 11:00', wrapping, 'sun', '11:00', 2 * MB],
    ['wrapping day range, Tuesday 11:00', wrapping, 'tue', '11:00', 4 * MB],
    ['wrapping day range, Monday 12:00', wrapping, 'mon', '12:00', 4 * MB],
  ])('%s', (_, settings, day, time, expected) => {
    const schedule = parseBandwidthSchedule(settings, { timeZone: 'UTC' });
    expect(bytesPerSecondAt(schedule, at(days[day]!, time))).toBe(expected);
  });

  it('reads local time in the given zone', () => {
    const schedule = parseBandwidthSchedule(office, { timeZone: 'Asia/Tokyo' });
    // 23:30 UTC Sunday is 08:30 Monday in Tokyo.
    expect(isWorkTime(schedule, at('08', '23:30'))).toBe(true);
    expect(isWorkTime(parseBandwidthSchedule(office, { timeZone: 'UTC' }), at('08', '23:30'))).toBe(false);
  });

  it('treats absent or zero rates as unlimited', () => {
    const schedule = parseBandwidthSchedule({ workHours: '08:00-18:00', workDays: 'mon-fri' }, { timeZone: 'UTC' });
    expect(bytesPerSecondAt(schedule, at('02', '09:00'))).toBe(Infinity);
    expect(bytesPerSecondAt(schedule, at('02', '20:00'))).toBe(Infinity);
  });

  it.each([
    [{ workHours: '8-18', workDays: 'mon-fri' }, 'workHours'],
    [{ workHours: '08:00-25:00', workDays: 'mon-fri' }, 'workHours'],
    [{ workHours: '08:00-08:00', workDays: 'mon-fri' }, 'empty window'],
    [{ workHours: '08:00-18:00', workDays: 'monday' }, 'workDays'],
    [{ workHours: '08:00-18:00', workDays: 'mon-fri-sat' }, 'workDays'],
    [{ workHours: '08:00-18:00', workDays: 'mon-fri', workMbps: -1 }, 'workMbps'],
  ])('refuses invalid settings %#', (settings, field) => {
    expect(() => parseBandwidthSchedule(settings as ThrottleSettings)).toThrow(expect.objectContaining({ code: 'STRATA_CONFIG_INVALID', message: expect.stringContaining(field) }));
  });
});
