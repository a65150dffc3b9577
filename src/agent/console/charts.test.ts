import { describe, expect, it } from 'vitest';
import { barsSvg, growthSvg, niceBytesMax, niceMax } from './charts.js';

const count = (svg: string, re: RegExp) => svg.match(re)?.length ?? 0;

describe('charts', () => {
  it('rounds axis maxima up to a readable value', () => {
    expect(niceMax(0)).toBeGreaterThan(0);
    expect(niceMax(7.3)).toBeGreaterThanOrEqual(7.3);
    expect(niceBytesMax(3 * 1024 ** 3 + 1)).toBeGreaterThanOrEqual(3 * 1024 ** 3 + 1);
    expect(niceBytesMax(3 * 1024 ** 3 + 1)).toBeLessThanOrEqual(10 * 1024 ** 3);
  });

  it('growth: a step line through every point, on a byte axis with five grid lines', () => {
    const day = 86_400_000;
    const series = [
      { time: 3 * day, value: 300 * 1024 ** 2, title: 'third' },
      { time: 1 * day, value: 100 * 1024 ** 2, title: 'first' },
      { time: 2 * day, value: 200 * 1024 ** 2, title: 'second' },
    ];
    const svg = growthSvg(series, { tz: 'UTC', label: 'pool growth' }).toString();
    expect(count(svg, /<line class="grid"/g)).toBe(5);
    expect(count(svg, /<circle class="pt pt-disk"/g)).toBe(3);
    expect(svg.indexOf('<title>first</title>')).toBeLessThan(svg.indexOf('<title>third</title>')); // drawn in time order
    expect(svg).toMatch(/aria-label="pool growth"/);
    expect(svg).toMatch(/MiB<\/text>/);
  });

  it('bars: one bar per value, its tone as a class, labels escaped', () => {
    const svg = barsSvg(
      [
        { label: '#1', value: 10, title: 'job 1', tone: 'ok' },
        { label: '<2>', value: 0, title: 'job 2', tone: 'bad' },
      ],
      { label: 'throughput', format: (v) => `${v} x` },
    ).toString();
    expect(count(svg, /<rect class="bar bar-/g)).toBe(2);
    expect(svg).toMatch(/class="bar bar-bad"/);
    expect(svg).toContain('&lt;2&gt;');
    expect(count(svg, /<line class="grid"/g)).toBe(5);
    expect(svg).toMatch(/>0 x<\/text>/);
  });
});
