// Charts as inline SVG, rendered on the server (no script, nothing fetched): the recovery-point timeline,
// storage growth, and throughput per job. Colours come from the stylesheet (classes), so the SVG holds
// only geometry and escaped text.
import { escapeHtml, formatBytes, formatTime, raw, type Html } from './html.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const SEC = 1000;
const STEPS = [10 * SEC, 30 * SEC, MIN, 5 * MIN, 15 * MIN, 30 * MIN, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 365 * DAY];

export interface TimeRange {
  from: number;
  to: number;
}

/** A range around the given times, padded so that points do not sit on the edges (a single time gets ±20 seconds). */
export function rangeOf(times: number[]): TimeRange {
  if (times.length === 0) return { from: 0, to: 1 };
  const lo = Math.min(...times);
  const hi = Math.max(...times);
  const pad = Math.max((hi - lo) * 0.06, 20 * SEC);
  return { from: lo - pad, to: hi + pad };
}

/** Tick times at a step that gives at most `max` ticks, aligned to the step (in UTC). */
export function timeTicks(range: TimeRange, max = 7): { step: number; ticks: number[] } {
  const span = range.to - range.from;
  const step = STEPS.find((s) => span / s <= max) ?? STEPS.at(-1)!;
  const ticks: number[] = [];
  for (let t = Math.ceil(range.from / step) * step; t <= range.to; t += step) ticks.push(t);
  return { step, ticks };
}

function tickLabel(t: number, step: number, tz: string): string {
  const s = formatTime(t, tz); // "YYYY-MM-DD HH:MM:SS"
  return step >= DAY ? s.slice(5, 10) : step < MIN ? s.slice(11, 19) : s.slice(11, 16);
}

const n = (x: number) => (Math.round(x * 10) / 10).toString();

export interface TimelinePoint {
  time: number;
  href: string;
  title: string;
  onDisk: boolean;
  /** none | pending | uploading | uploaded | deleted */
  cloud: string;
}

/**
 * One group's recovery points on a time axis, in two lanes: the local pool (disk) and the vault (cloud).
 * A point present in a lane is a filled dot there; a point waiting for the vault is a hollow dot in the
 * cloud lane. Each dot links to the point and has a tooltip.
 */
export function timelineSvg(points: TimelinePoint[], options: { tz: string; width?: number }): Html {
  const W = options.width ?? 960;
  const H = 104;
  const left = 56;
  const right = 16;
  const lanes = { disk: 30, cloud: 62 };
  const range = rangeOf(points.map((p) => p.time));
  const x = (t: number) => left + ((t - range.from) / (range.to - range.from)) * (W - left - right);
  const { step, ticks } = timeTicks(range);
  const parts: string[] = [];
  parts.push(`<line class="lane" x1="${left}" x2="${W - right}" y1="${lanes.disk}" y2="${lanes.disk}"/>`, `<line class="lane" x1="${left}" x2="${W - right}" y1="${lanes.cloud}" y2="${lanes.cloud}"/>`);
  parts.push(`<text class="lane-label" x="${left - 8}" y="${lanes.disk + 4}" text-anchor="end">disk</text>`, `<text class="lane-label" x="${left - 8}" y="${lanes.cloud + 4}" text-anchor="end">cloud</text>`);
  for (const t of ticks) {
    parts.push(`<line class="tick" x1="${n(x(t))}" x2="${n(x(t))}" y1="14" y2="${H - 24}"/>`);
    if (x(t) > left + 24 && x(t) < W - right - 24) parts.push(`<text class="tick-label" x="${n(x(t))}" y="${H - 8}" text-anchor="middle">${escapeHtml(tickLabel(t, step, options.tz))}</text>`);
  }
  for (const p of points) {
    const cx = n(x(p.time));
    const title = `<title>${escapeHtml(p.title)}</title>`;
    const dots: string[] = [];
    if (p.onDisk) dots.push(`<circle class="pt pt-disk" cx="${cx}" cy="${lanes.disk}" r="6"/>`);
    else dots.push(`<circle class="pt pt-gone" cx="${cx}" cy="${lanes.disk}" r="4"/>`);
    if (p.cloud === 'uploaded') dots.push(`<circle class="pt pt-cloud" cx="${cx}" cy="${lanes.cloud}" r="6"/>`);
    else if (p.cloud === 'pending' || p.cloud === 'uploading') dots.push(`<circle class="pt pt-pending" cx="${cx}" cy="${lanes.cloud}" r="5"/>`);
    else if (p.cloud === 'deleted') dots.push(`<circle class="pt pt-gone" cx="${cx}" cy="${lanes.cloud}" r="4"/>`);
    parts.push(`<a href="${escapeHtml(p.href)}" class="pt-link">${title}${dots.join('')}</a>`);
  }
  return raw(`<svg class="chart timeline" viewBox="0 0 ${W} ${H}" role="img" aria-label="recovery point timeline">${parts.join('')}</svg>`);
}

/** A "nice" upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten, at least `v`. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** `niceMax` in binary units (KiB, MiB, …), so that byte axes read 5 MiB rather than 4.77 MiB. */
export function niceBytesMax(v: number): number {
  if (!(v > 0)) return 1024;
  let unit = 1;
  while (v / unit >= 1024) unit *= 1024;
  return niceMax(v / unit) * unit;
}

export interface SeriesPoint {
  time: number;
  value: number;
  title: string;
}

/**
 * The frame of a chart with a value axis: width W and height 180, plot area inside the margins, `y(v)`
 * mapping 0..max onto it, and the four horizontal grid lines with their labels already in `parts`.
 */
function valuePlot(W: number, left: number, max: number, format: (v: number) => string) {
  const H = 180;
  const right = 16;
  const top = 12;
  const bottom = 28;
  const y = (v: number) => top + (1 - v / max) * (H - top - bottom);
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    parts.push(`<line class="grid" x1="${left}" x2="${W - right}" y1="${n(y(v))}" y2="${n(y(v))}"/>`, `<text class="tick-label" x="${left - 6}" y="${n(y(v) + 4)}" text-anchor="end">${escapeHtml(format(v))}</text>`);
  }
  return { W, H, left, right, y, parts };
}

/** A step-area chart of a growing quantity over time (storage growth per recovery point), y in bytes. */
export function growthSvg(series: SeriesPoint[], options: { tz: string; width?: number; label: string }): Html {
  const { W, H, left, right, y, parts } = valuePlot(options.width ?? 960, 72, niceBytesMax(Math.max(0, ...series.map((p) => p.value))), formatBytes);
  const range = rangeOf(series.map((p) => p.time));
  const x = (t: number) => left + ((t - range.from) / (range.to - range.from)) * (W - left - right);
  const { step, ticks } = timeTicks(range);
  for (const t of ticks) {
    if (x(t) > left + 24 && x(t) < W - right - 24) parts.push(`<text class="tick-label" x="${n(x(t))}" y="${H - 8}" text-anchor="middle">${escapeHtml(tickLabel(t, step, options.tz))}</text>`);
  }
  if (series.length > 0) {
    const sorted = [...series].sort((a, b) => a.time - b.time);
    let d = `M${n(x(range.from))},${n(y(0))}`;
    let prev = 0;
    for (const p of sorted) {
      d += ` L${n(x(p.time))},${n(y(prev))} L${n(x(p.time))},${n(y(p.value))}`;
      prev = p.value;
    }
    d += ` L${n(x(range.to))},${n(y(prev))}`;
    parts.push(`<path class="area" d="${d} L${n(x(range.to))},${n(y(0))} Z"/>`, `<path class="line" d="${d}"/>`);
    for (const p of sorted) parts.push(`<circle class="pt pt-disk" cx="${n(x(p.time))}" cy="${n(y(p.value))}" r="3.5"><title>${escapeHtml(p.title)}</title></circle>`);
  }
  return raw(`<svg class="chart growth" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(options.label)}">${parts.join('')}</svg>`);
}

export interface Bar {
  label: string;
  value: number;
  title: string;
  /** A state class: ok, warn, bad. */
  tone: string;
}

/** Vertical bars (throughput per job), y formatted with `format`, labels under the bars. */
export function barsSvg(bars: Bar[], options: { width?: number; label: string; format: (v: number) => string; bytes?: boolean }): Html {
  const top0 = Math.max(0, ...bars.map((b) => b.value));
  const { W, H, left, right, y, parts } = valuePlot(options.width ?? 960, 80, options.bytes ? niceBytesMax(top0) : niceMax(top0), options.format);
  const slot = (W - left - right) / Math.max(bars.length, 1);
  const bw = Math.min(36, slot * 0.7);
  bars.forEach((b, i) => {
    const cx = left + slot * i + slot / 2;
    const h = Math.max(1, y(0) - y(b.value));
    parts.push(
      `<rect class="bar bar-${escapeHtml(b.tone)}" x="${n(cx - bw / 2)}" y="${n(y(0) - h)}" width="${n(bw)}" height="${n(h)}"><title>${escapeHtml(b.title)}</title></rect>`,
      `<text class="tick-label" x="${n(cx)}" y="${H - 8}" text-anchor="middle">${escapeHtml(b.label)}</text>`,
    );
  });
  return raw(`<svg class="chart bars" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(options.label)}">${parts.join('')}</svg>`);
}

/** A horizontal usage meter (used of total), for pool and scratch file systems. */
export function meterSvg(parts: { value: number; tone: string; title: string }[], total: number): Html {
  const W = 300;
  const H = 12;
  let x = 0;
  const rects = parts.map((p) => {
    const w = total > 0 ? Math.max(0, Math.min(W - x, (p.value / total) * W)) : 0;
    const r = `<rect class="meter-${escapeHtml(p.tone)}" x="${n(x)}" y="0" width="${n(w)}" height="${H}"><title>${escapeHtml(p.title)}</title></rect>`;
    x += w;
    return r;
  });
  return raw(`<svg class="meter" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label="usage"><rect class="meter-bg" x="0" y="0" width="${W}" height="${H}" rx="3"/>${rects.join('')}</svg>`);
}
