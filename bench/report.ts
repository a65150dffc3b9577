// Results of bench runs: medians, strata's ratios to each peer, the issue's targets, and the text
// and markdown renderings. Pure functions, unit-tested without running anything.
import type { ToolName } from './drivers.js';

export interface RunMetrics {
  tool: ToolName;
  run: number;
  /** Set when a phase failed; the metrics measured before it are kept. */
  error?: string;
  initialSeconds?: number;
  initialMBps?: number;
  /** User + system CPU seconds of the initial backup: steadier than wall time on a shared machine. */
  initialCpuSeconds?: number;
  unchangedSeconds?: number;
  incrementalSeconds?: number;
  restoreSeconds?: number;
  restoreMBps?: number;
  /** false when the restored tree did not hash the same as the source: the restore figure is then void. */
  restoreVerified?: boolean;
  verifyError?: string;
  checkSeconds?: number;
  checkMBps?: number;
  storedBytes?: number;
  storedBytesFinal?: number;
  rssBackupMiB?: number;
  rssMaxMiB?: number;
  /** Peak RSS (MiB) of each measured phase. */
  rss: Record<string, number | null>;
  /** CPU seconds (user + system) the tool used in each measured phase. */
  cpu?: Record<string, number | null>;
  /** Cores' worth of CPU that other processes used during each measured phase (noise). */
  background?: Record<string, number | null>;
  /** The machine's speed probe (measure.ts cpuProbe, MB/s) just before each measured phase. */
  probe?: Record<string, number>;
}

/** The lowest and highest speed probe over a run's phases, or null. */
export function probeRange(r: RunMetrics): { min: number; max: number } | null {
  const v = Object.values(r.probe ?? {});
  return v.length ? { min: Math.min(...v), max: Math.max(...v) } : null;
}

/** Spread of the speed probe over all runs: (max - min) / median. Above PROBE_WARN, the machine's speed moved. */
export function probeSpread(runs: readonly RunMetrics[]): { min: number; median: number; max: number; spread: number } | null {
  const v = runs.flatMap((r) => Object.values(r.probe ?? {}));
  const med = median(v);
  if (med === null || med <= 0) return null;
  const min = Math.min(...v);
  const max = Math.max(...v);
  return { min, median: med, max, spread: (max - min) / med };
}

/** A speed probe that moves more than this (fraction of its median) over an invocation is reported. */
export const PROBE_WARN = 0.15;

/** The largest background CPU use (cores) over a run's phases, or null. */
export function maxBackground(r: RunMetrics): number | null {
  const v = Object.values(r.background ?? {}).filter((x): x is number => typeof x === 'number');
  return v.length ? Math.max(...v) : null;
}

/** Background load above this (cores, on any phase) is reported as disturbing the figures. */
export const BACKGROUND_WARN = 0.25;

export type MetricKey =
  | 'initialMBps'
  | 'initialCpuSeconds'
  | 'unchangedSeconds'
  | 'incrementalSeconds'
  | 'restoreMBps'
  | 'checkMBps'
  | 'storedBytes'
  | 'storedBytesFinal'
  | 'rssBackupMiB'
  | 'rssMaxMiB';

export interface MetricDef {
  key: MetricKey;
  label: string;
  better: 'higher' | 'lower';
  unit: 'MB/s' | 's' | 'bytes' | 'MiB';
}

export const METRICS: readonly MetricDef[] = [
  { key: 'initialMBps', label: 'initial backup (MB/s)', better: 'higher', unit: 'MB/s' },
  { key: 'initialCpuSeconds', label: 'initial backup, CPU time (s)', better: 'lower', unit: 's' },
  { key: 'unchangedSeconds', label: 'unchanged re-backup (s)', better: 'lower', unit: 's' },
  { key: 'incrementalSeconds', label: 'incremental after mutate (s)', better: 'lower', unit: 's' },
  { key: 'restoreMBps', label: 'full restore (MB/s)', better: 'higher', unit: 'MB/s' },
  { key: 'checkMBps', label: 'check --read-data (MB/s)', better: 'higher', unit: 'MB/s' },
  { key: 'storedBytes', label: 'stored size, initial backup (bytes)', better: 'lower', unit: 'bytes' },
  { key: 'storedBytesFinal', label: 'stored size, after all 3 backups (bytes)', better: 'lower', unit: 'bytes' },
  { key: 'rssBackupMiB', label: 'peak RSS, initial backup (MiB)', better: 'lower', unit: 'MiB' },
  { key: 'rssMaxMiB', label: 'peak RSS, any phase (MiB)', better: 'lower', unit: 'MiB' },
];

/** The targets of issue 3, as ratios strata ÷ peer (or an absolute bound). */
export interface Target {
  key: MetricKey;
  peer: ToolName | null;
  op: '>=' | '<=';
  value: number;
  text: string;
}

export const TARGETS: readonly Target[] = [
  { key: 'initialMBps', peer: 'restic', op: '>=', value: 3, text: 'initial backup ≥ 3× restic' },
  { key: 'initialMBps', peer: 'borg', op: '>=', value: 2.5, text: 'initial backup ≥ 2.5× borg' },
  { key: 'unchangedSeconds', peer: 'restic', op: '<=', value: 0.5, text: 'unchanged re-backup ≤ 0.5× restic’s time' },
  { key: 'incrementalSeconds', peer: 'restic', op: '<=', value: 0.5, text: 'incremental ≤ 0.5× restic’s time' },
  { key: 'restoreMBps', peer: 'restic', op: '>=', value: 2, text: 'full restore ≥ 2× restic' },
  { key: 'checkMBps', peer: 'restic', op: '>=', value: 2, text: 'check --read-data ≥ 2× restic' },
  { key: 'storedBytes', peer: 'borg', op: '<=', value: 1, text: 'stored size ≤ borg (lz4)' },
  { key: 'rssBackupMiB', peer: null, op: '<=', value: 256, text: 'peak RSS ≤ 256 MiB while backing up (2 GiB corpus)' },
];

export function median(xs: readonly number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

export type Medians = Partial<Record<ToolName, Partial<Record<MetricKey, number | null>>>>;

/** Medians per tool and metric over the runs that produced the metric (a failed restore verification voids its figure). */
export function medians(runs: readonly RunMetrics[], tools: readonly ToolName[]): Medians {
  const out: Medians = {};
  for (const tool of tools) {
    const mine = runs.filter((r) => r.tool === tool);
    const row: Partial<Record<MetricKey, number | null>> = {};
    for (const m of METRICS) {
      const vals = mine
        .filter((r) => !(m.key === 'restoreMBps' && r.restoreVerified === false))
        .map((r) => r[m.key])
        .filter((x): x is number => typeof x === 'number');
      row[m.key] = median(vals);
    }
    out[tool] = row;
  }
  return out;
}

/** strata ÷ peer for one metric, or null. */
export function ratio(med: Medians, key: MetricKey, peer: ToolName): number | null {
  const s = med.strata?.[key];
  const p = med[peer]?.[key];
  if (s == null || p == null || p === 0) return null;
  return s / p;
}

export interface TargetResult extends Target {
  actual: number | null;
  met: boolean | null;
}

export function evaluateTargets(med: Medians): TargetResult[] {
  return TARGETS.map((t) => {
    const actual = t.peer ? ratio(med, t.key, t.peer) : (med.strata?.[t.key] ?? null);
    const met = actual == null ? null : t.op === '>=' ? actual >= t.value : actual <= t.value;
    return { ...t, actual, met };
  });
}

export function fmtValue(v: number | null | undefined, unit: MetricDef['unit']): string {
  if (v == null) return 'n/a';
  switch (unit) {
    case 'MB/s':
      return v >= 100 ? v.toFixed(0) : v.toFixed(1);
    case 's':
      return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
    case 'bytes':
      return Math.round(v).toLocaleString('en-US');
    case 'MiB':
      return v.toFixed(0);
  }
}

export function fmtRatio(r: number | null): string {
  return r == null ? 'n/a' : `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}

export interface ReportMeta {
  date: string;
  machine: { cpu: string; cores: number; memoryBytes: number; kernel: string; filesystem: string | null };
  versions: Record<string, string | null>;
  corpus: {
    sizeRequested: number;
    seed: number;
    files: number;
    dirs: number;
    bytes: number;
    byClass: Record<string, { files: number; bytes: number }>;
    duplicates: { files: number; bytes: number; exact: number; edited: number };
  };
  mutate: { seed: number; fraction: number; changedBytes: number; bytesBefore: number; files: Record<string, number> } | null;
  runs: number;
  cacheDrop: boolean;
  /** Why the cache was not dropped (not permitted, or --no-drop-caches). */
  cacheDropNote: string;
  settings: string[];
  unavailable: { tool: ToolName; reason: string }[];
}

export interface Table {
  header: string[];
  rows: string[][];
}

export function buildTable(med: Medians, tools: readonly ToolName[], runs: readonly RunMetrics[]): Table {
  // Ratios only mean something when strata is in the table.
  const peers = tools.includes('strata') ? tools.filter((t) => t !== 'strata') : [];
  const header = ['metric (median)', ...tools, ...peers.map((p) => `strata ÷ ${p}`), 'target'];
  const rows: string[][] = [];
  for (const m of METRICS) {
    const row = [m.label];
    for (const t of tools) {
      let cell = fmtValue(med[t]?.[m.key], m.unit);
      if (m.key === 'restoreMBps' && runs.some((r) => r.tool === t && r.restoreVerified === false)) cell += ' (VERIFY FAILED)';
      row.push(cell);
    }
    for (const p of peers) row.push(fmtRatio(ratio(med, m.key, p)));
    row.push(TARGETS.filter((t) => t.key === m.key).map((t) => (t.peer ? `${t.op === '>=' ? '≥' : '≤'} ${t.value}× ${t.peer}` : `≤ ${t.value} ${m.unit}`)).join(', '));
    rows.push(row);
  }
  return { header, rows };
}

export function renderText(table: Table): string {
  const widths = table.header.map((h, i) => Math.max(h.length, ...table.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(table.header), widths.map((w) => '-'.repeat(w)).join('  '), ...table.rows.map(line)].join('\n');
}

export function renderMarkdownTable(table: Table): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `| ${table.header.map(esc).join(' | ')} |`,
    `|${table.header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...table.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function human(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(n % 2 ** 30 === 0 ? 0 : 2)} GiB` : mib(n);
}

export function renderTargets(results: readonly TargetResult[]): string[] {
  return results.map((t) => {
    const mark = t.met == null ? 'n/a' : t.met ? 'met' : 'MISSED';
    const actual = t.actual == null ? 'n/a' : t.peer ? fmtRatio(t.actual) : `${t.actual.toFixed(0)} MiB`;
    return `- ${t.text}: ${actual} — ${mark}`;
  });
}

export function renderMarkdown(meta: ReportMeta, table: Table, targets: readonly TargetResult[], runs: readonly RunMetrics[]): string {
  const c = meta.corpus;
  const cls = Object.entries(c.byClass)
    .map(([k, v]) => `${k} ${v.files} files / ${mib(v.bytes)} (${((100 * v.bytes) / c.bytes).toFixed(0)}%)`)
    .join(', ');
  const out: string[] = [];
  out.push(`## Bench: ${human(c.sizeRequested)} corpus, ${meta.runs} run(s) per tool, ${meta.date}`);
  out.push('');
  out.push(`- Machine: ${meta.machine.cpu}, ${meta.machine.cores} cores, ${(meta.machine.memoryBytes / 2 ** 30).toFixed(1)} GiB RAM, Linux ${meta.machine.kernel}${meta.machine.filesystem ? `, bench dir on ${meta.machine.filesystem}` : ''}`);
  out.push(`- Versions: ${Object.entries(meta.versions).map(([k, v]) => `${k} ${v ?? 'n/a'}`).join(', ')}`);
  out.push(`- Corpus (seed ${c.seed}): ${c.files} files in ${c.dirs} directories, ${c.bytes.toLocaleString('en-US')} bytes; ${cls}; duplicates ${c.duplicates.files} files / ${mib(c.duplicates.bytes)} (${c.duplicates.exact} exact, ${c.duplicates.edited} edited)`);
  if (meta.mutate) {
    const m = meta.mutate;
    out.push(`- Mutation (seed ${m.seed}): ${m.changedBytes.toLocaleString('en-US')} bytes changed (${((100 * m.changedBytes) / m.bytesBefore).toFixed(2)}%): ${Object.entries(m.files).map(([k, v]) => `${v} ${k}`).join(', ')}`);
  }
  out.push(`- Page cache dropped before every measured phase: ${meta.cacheDrop ? 'yes' : `NO (${meta.cacheDropNote}): figures include warm-cache effects`}`);
  for (const s of meta.settings) out.push(`- ${s}`);
  for (const u of meta.unavailable) out.push(`- ${u.tool}: not measured (${u.reason})`);
  out.push('');
  out.push(renderMarkdownTable(table));
  out.push('');
  out.push('Ratios are strata ÷ peer: above 1 is better for MB/s, below 1 is better for seconds, bytes and MiB.');
  out.push('Backup MB/s = corpus bytes ÷ wall time; restore MB/s = restored bytes ÷ wall time (every restore is verified');
  out.push('against a hash of the source tree); check MB/s = corpus bytes ÷ wall time of a check that reads all stored data.');
  out.push('CPU time = the tool’s user + system seconds (GNU time). Background CPU = cores’ worth of CPU that *other*');
  out.push('processes used during a measured phase (/proc/stat busy time minus the tool’s own): the noise in a wall-time figure.');
  out.push('');
  out.push('### Targets (issue 3)');
  out.push(...renderTargets(targets));
  const noisy = runs.filter((r) => (maxBackground(r) ?? 0) > BACKGROUND_WARN);
  if (noisy.length > 0) {
    out.push('');
    out.push(`**Warning:** other processes used more than ${BACKGROUND_WARN} of a core during ${noisy.length} of ${runs.length} tool-runs (see the per-run figures): those figures are disturbed; rerun on a quiet machine.`);
  }
  const probe = probeSpread(runs);
  if (probe) {
    out.push('');
    out.push(`Machine speed (a fixed SHA-256 probe on one core before every measured phase): ${probe.min.toFixed(0)}–${probe.max.toFixed(0)} MB/s, median ${probe.median.toFixed(0)}, a spread of ${(100 * probe.spread).toFixed(0)}%.`);
    if (probe.spread > PROBE_WARN) {
      out.push(`**Warning:** the machine's speed moved by more than ${(100 * PROBE_WARN).toFixed(0)}% during this invocation (a virtual machine whose host got busy shows no background load): compare the per-run figures with their probe.`);
    }
  }
  const failures = runs.filter((r) => r.error || r.restoreVerified === false);
  if (failures.length > 0) {
    out.push('');
    out.push('### Failures');
    for (const f of failures) {
      const msg = (f.error ?? f.verifyError ?? '').split('\n').slice(0, 6).join(' / ');
      out.push(`- ${f.tool}, run ${f.run}: ${msg}`);
    }
  }
  out.push('');
  out.push('<details><summary>Per-run figures</summary>');
  out.push('');
  out.push('| tool | run | initial s | unchanged s | incremental s | restore s | check s | stored bytes | peak RSS MiB (backup / any) | tool CPU s, initial backup | background CPU, cores (max over phases) | speed probe MB/s (min–max over phases) |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    const f = (v: number | undefined): string => (v == null ? 'n/a' : v.toFixed(2));
    out.push(`| ${r.tool} | ${r.run} | ${f(r.initialSeconds)} | ${f(r.unchangedSeconds)} | ${f(r.incrementalSeconds)} | ${f(r.restoreSeconds)}${r.restoreVerified === false ? ' (verify failed)' : ''} | ${f(r.checkSeconds)} | ${r.storedBytes?.toLocaleString('en-US') ?? 'n/a'} | ${r.rssBackupMiB?.toFixed(0) ?? 'n/a'} / ${r.rssMaxMiB?.toFixed(0) ?? 'n/a'} | ${r.cpu?.['initial backup']?.toFixed(1) ?? 'n/a'} | ${maxBackground(r)?.toFixed(2) ?? 'n/a'} | ${fmtProbe(probeRange(r))} |`);
  }
  out.push('');
  out.push('</details>');
  return out.join('\n') + '\n';
}

function fmtProbe(p: { min: number; max: number } | null): string {
  return p ? `${p.min.toFixed(0)}–${p.max.toFixed(0)}` : 'n/a';
}
