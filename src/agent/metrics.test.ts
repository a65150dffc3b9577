import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../clock.js';
import type { StrataConfig } from '../config/types.js';
import { AgentContext } from './context.js';
import { collectMetrics, escapeLabelValue, formatExposition, renderMetrics, type MetricsSnapshot } from './metrics.js';

interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Parsed {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: ParsedSample[];
}

/**
 * A strict reader of the text exposition format (0.0.4): HELP and TYPE once per family and before its
 * samples, samples of a family contiguous, valid names, label values with \\, \" and \n escapes only.
 */
function parseExposition(text: string): Parsed {
  expect(text.endsWith('\n')).toBe(true);
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const samples: ParsedSample[] = [];
  const closed = new Set<string>();
  let current: string | null = null;
  const familyOf = (name: string) => {
    for (const base of [name, name.replace(/_(sum|count|bucket)$/, '')]) if (type.has(base)) return base;
    throw new Error(`sample ${name} before its TYPE line`);
  };
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
      if (help.has(m[1]!)) throw new Error(`HELP twice for ${m[1]}`);
      help.set(m[1]!, m[2]!.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\')));
      continue;
    }
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|summary|histogram|untyped)$/.exec(line))) {
      if (type.has(m[1]!)) throw new Error(`TYPE twice for ${m[1]}`);
      if (current) closed.add(current);
      current = m[1]!;
      type.set(m[1]!, m[2]!);
      continue;
    }
    if (line.startsWith('#')) throw new Error(`unexpected comment: ${line}`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const family = familyOf(m[1]!);
    if (family !== current || closed.has(family)) throw new Error(`samples of ${family} are not contiguous`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      let rest = m[2].slice(1, -1);
      while (rest.length) {
        const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
        if (!lm) throw new Error(`bad labels in ${JSON.stringify(line)}`);
        if (lm[1]! in labels) throw new Error(`label ${lm[1]} twice`);
        labels[lm[1]!] = lm[2]!.replace(/\\([\\"n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
        rest = rest.slice(lm[0].length);
      }
    }
    const v = m[3]!;
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : v === 'NaN' ? NaN : Number(v);
    if (!/^(NaN|[+-]Inf|[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?)$/i.test(v)) throw new Error(`bad value ${v}`);
    samples.push({ name: m[1]!, labels, value });
  }
  for (const name of type.keys()) if (!help.has(name)) throw new Error(`no HELP for ${name}`);
  return { help, type, samples };
}

const value = (p: Parsed, name: string, labels: Record<string, string> = {}) => p.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

const SNAPSHOT: MetricsSnapshot = {
  at: Date.UTC(2026, 4, 1, 12, 0, 0),
  registered: true,
  bytesProtected: 3 * 1024 ** 3,
  bytesStored: { disk: 1_000_000_000, cloud: 900_000_000 },
  bytesDeduplicated: 12_345,
  recoveryPoints: [
    { group: 'fileserver', copy: 'disk', count: 14 },
    { group: 'fileserver', copy: 'cloud', count: 3 },
    { group: 'odd "name" \\ with\nnewline', copy: 'disk', count: 1 },
  ],
  latestRecoveryPoint: [{ group: 'fileserver', time: Date.UTC(2026, 4, 1, 11, 45, 0) }],
  jobs: [
    { kind: 'backup', state: 'completed', count: 10, ended: 10, durationSeconds: 123.5 },
    { kind: 'backup', state: 'running', count: 1, ended: 0, durationSeconds: 0 },
    { kind: 'backup --to cloud', state: 'skipped', count: 2, ended: 2, durationSeconds: 0 },
  ],
  jobsRunning: 1,
  uploadBacklogBytes: 4096,
  lastContact: Date.UTC(2026, 4, 1, 11, 0, 0),
  subscription: 'expired',
  connected: true,
  gate: [
    { operation: 'backup-disk', allowed: false },
    { operation: 'restore-disk', allowed: true },
  ],
};

describe('metrics: the exposition format', () => {
  it('renders every family with HELP and TYPE, and reads back to the same values', () => {
    const text = renderMetrics(SNAPSHOT);
    const p = parseExposition(text);
    expect([...p.type]).toEqual([
      ['strata_registered', 'gauge'],
      ['strata_bytes_protected', 'gauge'],
      ['strata_bytes_stored', 'gauge'],
      ['strata_bytes_deduplicated', 'gauge'],
      ['strata_recovery_points', 'gauge'],
      ['strata_recovery_point_last_timestamp_seconds', 'gauge'],
      ['strata_job_duration_seconds', 'summary'],
      ['strata_jobs_total', 'counter'],
      ['strata_jobs_running', 'gauge'],
      ['strata_upload_backlog_bytes', 'gauge'],
      ['strata_seconds_since_last_contact', 'gauge'],
      ['strata_subscription_state', 'gauge'],
      ['strata_connectivity_connected', 'gauge'],
      ['strata_gate_allowed', 'gauge'],
    ]);
    expect(value(p, 'strata_bytes_protected')[0]!.value).toBe(3 * 1024 ** 3);
    expect(value(p, 'strata_bytes_stored', { copy: 'cloud' })[0]!.value).toBe(900_000_000);
    expect(value(p, 'strata_recovery_points', { group: 'fileserver', copy: 'disk' })[0]!.value).toBe(14);
    // A label value with a quote, a backslash and a line feed survives the round trip.
    expect(value(p, 'strata_recovery_points', { group: 'odd "name" \\ with\nnewline' })[0]!.value).toBe(1);
    expect(text).toContain('group="odd \\"name\\" \\\\ with\\nnewline"');
    expect(value(p, 'strata_recovery_point_last_timestamp_seconds', { group: 'fileserver' })[0]!.value).toBe(Date.UTC(2026, 4, 1, 11, 45) / 1000);
    // The summary: only ended jobs; _sum and _count under one family.
    expect(value(p, 'strata_job_duration_seconds_sum', { kind: 'backup', state: 'completed' })[0]!.value).toBe(123.5);
    expect(value(p, 'strata_job_duration_seconds_count', { kind: 'backup', state: 'completed' })[0]!.value).toBe(10);
    expect(value(p, 'strata_job_duration_seconds_count', { state: 'running' })).toEqual([]);
    expect(value(p, 'strata_jobs_total', { kind: 'backup --to cloud', state: 'skipped' })[0]!.value).toBe(2);
    expect(value(p, 'strata_seconds_since_last_contact')[0]!.value).toBe(3600);
    expect(value(p, 'strata_subscription_state').map((s) => [s.labels['state'], s.value])).toEqual([
      ['active', 0],
      ['expired', 1],
      ['deprovisioned', 0],
    ]);
    expect(value(p, 'strata_connectivity_connected')[0]!.value).toBe(1);
    expect(value(p, 'strata_gate_allowed', { operation: 'backup-disk' })[0]!.value).toBe(0);
    // HELP lines define what the byte counts are.
    expect(p.help.get('strata_bytes_deduplicated')).toMatch(/bytes minus its new bytes/);
    expect(p.help.get('strata_upload_backlog_bytes')).toMatch(/pending upload/);
  });

  it('leaves out what is unknown rather than inventing it', () => {
    const p = parseExposition(renderMetrics({ ...SNAPSHOT, lastContact: null, subscription: null, connected: null, gate: [] }));
    expect(value(p, 'strata_seconds_since_last_contact')).toEqual([]);
    expect(value(p, 'strata_subscription_state')).toEqual([]);
    expect(value(p, 'strata_connectivity_connected')).toEqual([]);
    // The families are still declared.
    expect(p.type.get('strata_subscription_state')).toBe('gauge');
  });

  it('escapes HELP text and label values, formats special values, and refuses bad names', () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    const text = formatExposition([
      { name: 'x_total', help: 'back\\slash\nand line', type: 'counter', samples: [{ value: Infinity }, { labels: { a: 'é€' }, value: NaN }, { labels: { a: 'n' }, value: -Infinity }] },
    ]);
    expect(text).toBe('# HELP x_total back\\\\slash\\nand line\n# TYPE x_total counter\nx_total +Inf\nx_total{a="é€"} NaN\nx_total{a="n"} -Inf\n');
    const p = parseExposition(text);
    expect(p.help.get('x_total')).toBe('back\\slash\nand line');
    expect(p.samples[1]!.labels['a']).toBe('é€');
    expect(() => formatExposition([{ name: 'bad-name', help: '', type: 'gauge', samples: [] }])).toThrow(/invalid metric name/);
    expect(() => formatExposition([{ name: 'ok', help: '', type: 'gauge', samples: [{ labels: { 'bad-label': 'x' }, value: 1 }] }])).toThrow(/invalid label name/);
    expect(() => formatExposition([{ name: 'ok', help: '', type: 'gauge', samples: [{ labels: { __reserved: 'x' }, value: 1 }] }])).toThrow(/invalid label name/);
    const twice = { name: 'ok', help: '', type: 'gauge' as const, samples: [] };
    expect(() => formatExposition([twice, twice])).toThrow(/twice/);
  });
});

describe('metrics: the collector', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('reads the figures from the catalog and the gate from the config', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'strata-metrics-'));
    dirs.push(dir);
    await writeFile(path.join(dir, 'pass'), 'correct horse battery staple 42\n', { mode: 0o600 });
    const config: StrataConfig = {
      stateDir: path.join(dir, 'state'),
      pool: path.join(dir, 'pool'),
      scratch: path.join(dir, 'scratch'),
      passphraseFile: path.join(dir, 'pass'),
      protectionGroups: [
        { name: 'files', sources: [{ path: '/srv/a' }, { path: '/srv/b' }], disk: { syncFrequency: '0 * * * *', retentionDays: 7 }, online: { schedule: '0 21 * * *', retention: { daily: 7 } } },
        { name: 'empty', sources: [{ path: '/srv/c' }], disk: { syncFrequency: '0 * * * *', retentionDays: 7 } },
      ],
      subscription: { provider: 'static', state: 'expired' },
    };
    const clock = new FakeClock(Date.UTC(2026, 4, 1, 12));
    const ctx = new AgentContext(config, { clock });
    try {
      const catalog = ctx.catalog();
      const pack = (id: string, size: number) => ({ id, size, entries: [] });
      catalog.addIndexSegment('seg1', [pack('p1', 1000), pack('p2', 2000), pack('p3', 4000)]);
      catalog.setPackCloudState('p1', 'indexed', clock.now());
      catalog.setPackCloudState('p2', 'uploaded', clock.now());
      const stats = (bytes: number, newBytes: number) => ({ bytes, newBytes, files: 1 });
      const rp = (id: string, source: string, time: number, s: Record<string, number>, cloudState = 'none') =>
        catalog.addRecoveryPoint({ id, group: 'files', source, sourceType: 'directory', host: 'h', time, tree: 't', parent: null, stats: s, warnings: [], cloudState });
      rp('a1', '/srv/a', 1000, stats(500, 500), 'uploaded');
      rp('a2', '/srv/a', 2000, stats(600, 100), 'pending');
      rp('b1', '/srv/b', 1500, stats(50, 50));
      catalog.addRecoveryPoint({ id: 'c1', group: '', source: '/tmp/x', sourceType: 'directory', host: 'h', time: 3000, tree: 't', parent: null, stats: stats(7, 7), warnings: [] });
      const j1 = catalog.createJob('backup', 'files', clock.now() - 90_000);
      catalog.finishJob(j1, 'completed', clock.now(), null);
      catalog.createJob('backup', 'files', clock.now());
      catalog.recordSkippedJob('backup', 'files', clock.now(), 'refused');
      catalog.setState('lastContact', clock.now() - 120_000);

      const s = await collectMetrics(ctx, { jobsRunning: 1 });
      expect(s).toMatchObject({
        registered: false,
        bytesProtected: 600 + 50 + 7, // the latest point of each source
        bytesStored: { disk: 7000, cloud: 3000 },
        bytesDeduplicated: 500, // a2: 600 - 100
        uploadBacklogBytes: 4000, // a2 is pending: p3 is not in the vault
        lastContact: clock.now() - 120_000,
        subscription: 'expired',
        connected: true,
        jobsRunning: 1,
      });
      expect(s.recoveryPoints).toEqual([
        { group: '(ad hoc)', copy: 'disk', count: 1 },
        { group: 'empty', copy: 'disk', count: 0 },
        { group: 'files', copy: 'cloud', count: 1 },
        { group: 'files', copy: 'disk', count: 3 },
      ]);
      expect(s.jobs).toEqual([
        { kind: 'backup', state: 'completed', count: 1, ended: 1, durationSeconds: 90 },
        { kind: 'backup', state: 'running', count: 1, ended: 0, durationSeconds: 0 },
        { kind: 'backup', state: 'skipped', count: 1, ended: 1, durationSeconds: 0 },
      ]);
      expect(s.gate).toEqual([
        { operation: 'backup-cloud', allowed: false },
        { operation: 'backup-disk', allowed: false },
        { operation: 'restore-cloud', allowed: true },
        { operation: 'restore-disk', allowed: true },
      ]);
      const p = parseExposition(renderMetrics(s));
      expect(value(p, 'strata_seconds_since_last_contact')[0]!.value).toBe(120);
      expect(value(p, 'strata_recovery_points', { group: 'empty' })[0]!.value).toBe(0);
    } finally {
      ctx.close();
    }
  });
});
