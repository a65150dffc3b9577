// Prometheus metrics: `collectMetrics` reads a snapshot from the catalog and the gate; `renderMetrics`
// turns a snapshot into the text exposition format (version 0.0.4), purely. Served as `GET /metrics` on
// the control socket and on the console listener.
//
// What the numbers mean (the HELP lines say the same):
// - bytes protected: file content in the latest recovery point of each data source (disk or cloud);
// - bytes stored: pack bytes in the local pool (copy="disk") and in the vault (copy="cloud"), that is
//   after deduplication, compression and encryption;
// - bytes deduplicated: over the recovery points in the local pool, the file bytes each one did not add
//   to the pool (its bytes minus its new bytes: unchanged files and chunks already present);
// - upload backlog: an approximation — while a recovery point waits for the vault (pending), the bytes
//   of local packs not yet in the vault; 0 when nothing waits. (Packs of groups without online
//   protection are counted too: an upper bound, not a walk of the pending points' trees.)
import type { Catalog } from '../catalog/catalog.js';
import { OPERATIONS, type Operation } from '../cloud/gate.js';
import type { SubscriptionState } from '../config/types.js';
import type { AgentContext } from './context.js';
import { gateStatus, getRegistration, lastContact } from './vault.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const SUBSCRIPTION_STATES: readonly SubscriptionState[] = ['active', 'expired', 'deprovisioned'];

/** The label value for recovery points of ad hoc backups (`backup --path`), which have no group. */
export const AD_HOC_GROUP = '(ad hoc)';

export interface JobStats {
  kind: string;
  state: string;
  /** Jobs of this kind in this state in the catalog's history. */
  count: number;
  /** Of those, the ones that ended, and their summed duration. */
  ended: number;
  durationSeconds: number;
}

/** Everything /metrics reports, at one moment. */
export interface MetricsSnapshot {
  /** Epoch ms when collected. */
  at: number;
  registered: boolean;
  bytesProtected: number;
  bytesStored: { disk: number; cloud: number };
  bytesDeduplicated: number;
  recoveryPoints: { group: string; copy: 'disk' | 'cloud'; count: number }[];
  /** Time (epoch ms) of each group's latest recovery point. */
  latestRecoveryPoint: { group: string; time: number }[];
  jobs: JobStats[];
  jobsRunning: number;
  uploadBacklogBytes: number;
  /** Epoch ms of the last successful contact with the vault, null if none. */
  lastContact: number | null;
  /** Null when the state could not be learned (no answer, nothing cached). */
  subscription: SubscriptionState | null;
  connected: boolean | null;
  gate: { operation: Operation; allowed: boolean }[];
}

// --- the exposition format ---

export type MetricType = 'gauge' | 'counter' | 'summary' | 'untyped';

export interface Sample {
  /** Appended to the family name (`_sum`, `_count` for a summary); default none. */
  suffix?: string;
  labels?: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** HELP text: backslash and line feed escaped. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A label value: backslash, double quote and line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/**
 * The text exposition format: for each family, `# HELP`, `# TYPE`, then its samples, each family once.
 * Throws on an invalid metric or label name (a programming error). Ends with a line feed.
 */
export function formatExposition(families: MetricFamily[]): string {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const f of families) {
    if (!METRIC_NAME.test(f.name)) throw new Error(`invalid metric name ${JSON.stringify(f.name)}`);
    if (seen.has(f.name)) throw new Error(`metric family ${f.name} given twice`);
    seen.add(f.name);
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {});
      for (const [k] of labels) if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new Error(`invalid label name ${JSON.stringify(k)} on ${f.name}`);
      const set = labels.length ? `{${labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}` : '';
      lines.push(`${f.name}${s.suffix ?? ''}${set} ${formatValue(s.value)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** The metric families of a snapshot (stable order: the README documents them in this order). */
export function metricFamilies(s: MetricsSnapshot): MetricFamily[] {
  const gauge = (name: string, help: string, samples: Sample[]): MetricFamily => ({ name, help, type: 'gauge', samples });
  const families: MetricFamily[] = [
    gauge('strata_registered', 'Whether this server is registered to a vault (1) or not (0).', [{ value: s.registered ? 1 : 0 }]),
    gauge(
      'strata_bytes_protected',
      'Bytes of file content in the latest recovery point of each data source (on disk or in the vault), summed over the data sources: what a full restore of every source would write.',
      [{ value: s.bytesProtected }],
    ),
    gauge(
      'strata_bytes_stored',
      'Bytes of packs holding the data, after deduplication, compression and encryption: copy="disk" in the local storage pool, copy="cloud" in the vault (uploaded or indexed).',
      [
        { labels: { copy: 'disk' }, value: s.bytesStored.disk },
        { labels: { copy: 'cloud' }, value: s.bytesStored.cloud },
      ],
    ),
    gauge(
      'strata_bytes_deduplicated',
      'Sum over the recovery points in the local pool of the file bytes each did not add to the pool (its bytes minus its new bytes): unchanged files and chunks already stored.',
      [{ value: s.bytesDeduplicated }],
    ),
    gauge(
      'strata_recovery_points',
      'Recovery points per protection group and copy: copy="disk" present in the local pool, copy="cloud" uploaded to the vault. Ad hoc backups have group="(ad hoc)".',
      s.recoveryPoints.map((r) => ({ labels: { group: r.group, copy: r.copy }, value: r.count })),
    ),
    gauge(
      'strata_recovery_point_last_timestamp_seconds',
      'Time (Unix seconds) of the latest recovery point of each protection group.',
      s.latestRecoveryPoint.map((r) => ({ labels: { group: r.group }, value: r.time / 1000 })),
    ),
    {
      name: 'strata_job_duration_seconds',
      help: 'Durations of the ended jobs in the catalog history, per job kind and final state (sum and count; skipped jobs last 0 s).',
      type: 'summary',
      samples: s.jobs
        .filter((j) => j.ended > 0)
        .flatMap((j) => [
          { suffix: '_sum', labels: { kind: j.kind, state: j.state }, value: j.durationSeconds },
          { suffix: '_count', labels: { kind: j.kind, state: j.state }, value: j.ended },
        ]),
    },
    {
      name: 'strata_jobs_total',
      help: 'Jobs in the catalog history per kind and state (running, completed, warnings, failed, interrupted, skipped).',
      type: 'counter',
      samples: s.jobs.map((j) => ({ labels: { kind: j.kind, state: j.state }, value: j.count })),
    },
    gauge('strata_jobs_running', 'Jobs the daemon is running now.', [{ value: s.jobsRunning }]),
    gauge(
      'strata_upload_backlog_bytes',
      'Approximate bytes waiting for the vault: while any recovery point is pending upload, the bytes of local packs not yet in the vault (an upper bound: packs of disk-only groups count too); 0 when none is pending.',
      [{ value: s.uploadBacklogBytes }],
    ),
    gauge(
      'strata_seconds_since_last_contact',
      'Seconds since the last successful contact with the vault (absent when there has been none); connectivity is lost after 15 days (1296000 s).',
      s.lastContact === null ? [] : [{ value: Math.max(0, (s.at - s.lastContact) / 1000) }],
    ),
    gauge(
      'strata_subscription_state',
      'The subscription state: 1 for the current state, 0 for the others (no sample when it is unknown).',
      s.subscription === null ? [] : SUBSCRIPTION_STATES.map((st) => ({ labels: { state: st }, value: st === s.subscription ? 1 : 0 })),
    ),
    gauge('strata_connectivity_connected', 'Connectivity to the vault: 1 connected, 0 lost (last contact more than 15 days ago, or none).', s.connected === null ? [] : [{ value: s.connected ? 1 : 0 }]),
    gauge(
      'strata_gate_allowed',
      'Whether the gating table allows an operation now (1) or stops it (0): backup-disk, backup-cloud, restore-disk, restore-cloud.',
      s.gate.map((g) => ({ labels: { operation: g.operation }, value: g.allowed ? 1 : 0 })),
    ),
  ];
  return families;
}

export function renderMetrics(snapshot: MetricsSnapshot): string {
  return formatExposition(metricFamilies(snapshot));
}

// --- the collector ---

type Row = Record<string, unknown>;

/** Aggregates from the catalog, with SQL so that a pool of 100 000 packs costs one query, not 100 000 objects. */
function catalogFigures(catalog: Catalog) {
  const db = catalog.db;
  const packs = db
    .prepare(
      `SELECT coalesce(sum(CASE WHEN local_state = 'present' THEN size END), 0) AS disk,
              coalesce(sum(CASE WHEN cloud_state IN ('uploaded', 'indexed') THEN size END), 0) AS cloud,
              coalesce(sum(CASE WHEN local_state = 'present' AND cloud_state IN ('none', 'deleted') THEN size END), 0) AS notInVault
         FROM packs`,
    )
    .get() as Row;
  const jobs = (
    db
      .prepare(
        `SELECT kind, state, count(*) AS n, count(ended) AS ended, coalesce(sum(CASE WHEN ended IS NOT NULL THEN max(ended - started, 0) END), 0) AS ms
           FROM jobs GROUP BY kind, state ORDER BY kind, state`,
      )
      .all() as Row[]
  ).map((r): JobStats => ({ kind: r['kind'] as string, state: r['state'] as string, count: r['n'] as number, ended: r['ended'] as number, durationSeconds: (r['ms'] as number) / 1000 }));

  const points = catalog.recoveryPoints();
  const latestOfSource = new Map<string, number>();
  const counts = new Map<string, { group: string; copy: 'disk' | 'cloud'; count: number }>();
  const latestOfGroup = new Map<string, number>();
  let deduplicated = 0;
  let pending = false;
  for (const rp of points) {
    const group = rp.group || AD_HOC_GROUP;
    const onDisk = rp.diskState === 'present';
    const inCloud = rp.cloudState === 'uploaded';
    if (onDisk) {
      deduplicated += Math.max(0, (rp.stats['bytes'] ?? 0) - (rp.stats['newBytes'] ?? 0));
      if (rp.cloudState === 'pending' || rp.cloudState === 'uploading') pending = true;
    }
    for (const [copy, has] of [['disk', onDisk], ['cloud', inCloud]] as const) {
      if (!has) continue;
      const key = `${group}\0${copy}`;
      const c = counts.get(key) ?? { group, copy, count: 0 };
      c.count++;
      counts.set(key, c);
    }
    if (onDisk || inCloud) {
      latestOfSource.set(`${rp.group}\0${rp.source}`, rp.stats['bytes'] ?? 0); // points come ordered by time
      latestOfGroup.set(group, Math.max(latestOfGroup.get(group) ?? 0, rp.time));
    }
  }
  return {
    bytesStored: { disk: packs['disk'] as number, cloud: packs['cloud'] as number },
    backlog: pending ? (packs['notInVault'] as number) : 0,
    jobs,
    bytesProtected: [...latestOfSource.values()].reduce((a, b) => a + b, 0),
    bytesDeduplicated: deduplicated,
    counts,
    latestOfGroup,
  };
}

/**
 * Reads a snapshot: the catalog's figures, and the gate's inputs without probing the vault (the stored
 * last contact and the subscription provider's answer, cached by it). Never throws for an unknown
 * subscription state: it is reported as unknown.
 */
export async function collectMetrics(ctx: AgentContext, options: { jobsRunning?: number; signal?: AbortSignal } = {}): Promise<MetricsSnapshot> {
  const catalog = ctx.catalog();
  const now = ctx.clock.now();
  const f = catalogFigures(catalog);
  // Groups of the config with no point yet still get their series (at 0), so alerts can see them.
  for (const g of ctx.config.protectionGroups) {
    for (const copy of g.online ? (['disk', 'cloud'] as const) : (['disk'] as const)) {
      if (!f.counts.has(`${g.name}\0${copy}`)) f.counts.set(`${g.name}\0${copy}`, { group: g.name, copy, count: 0 });
    }
  }
  let subscription: SubscriptionState | null = null;
  let connected: boolean | null = null;
  let gate: MetricsSnapshot['gate'] = [];
  try {
    const status = await gateStatus(ctx, { probe: false, ...(options.signal ? { signal: options.signal } : {}) });
    subscription = status.subscription;
    connected = status.connectivity === 'connected';
    gate = OPERATIONS.map((op) => ({ operation: op, allowed: status.decisions[op].allowed }));
  } catch (err) {
    ctx.log.warn({ err: (err as Error).message }, 'metrics: the subscription state is unknown');
  }
  return {
    at: now,
    registered: getRegistration(catalog) !== undefined,
    bytesProtected: f.bytesProtected,
    bytesStored: f.bytesStored,
    bytesDeduplicated: f.bytesDeduplicated,
    recoveryPoints: [...f.counts.values()].sort((a, b) => a.group.localeCompare(b.group) || a.copy.localeCompare(b.copy)),
    latestRecoveryPoint: [...f.latestOfGroup].map(([group, time]) => ({ group, time })).sort((a, b) => a.group.localeCompare(b.group)),
    jobs: f.jobs,
    jobsRunning: options.jobsRunning ?? 0,
    uploadBacklogBytes: f.backlog,
    lastContact: lastContact(catalog),
    subscription,
    connected,
    gate,
  };
}
