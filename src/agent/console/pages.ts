// The console's pages: pure functions from a model (model.ts) to HTML. Every value goes through `html`,
// which escapes it; charts come from charts.ts. Forms post to /actions/* with the CSRF token.
import type { RecoveryPointRow } from '../../catalog/catalog.js';
import type { GateDecision, Operation } from '../../cloud/gate.js';
import type { ErrorPayload, JobProgress, JobView } from '../job-runner.js';
import { barsSvg, growthSvg, meterSvg, timelineSvg, type Bar } from './charts.js';
import { formatBytes, formatDuration, formatRate, formatRelative, formatTime, html, shortId, type Html } from './html.js';
import type { Common, FsUsage, GroupsModel, JobsModel, OverviewModel, RecoveryPointModel, RecoveryPointsModel, RunningJob } from './model.js';

export type Page = 'overview' | 'groups' | 'recovery-points' | 'jobs';

export interface PageFrame {
  title: string;
  active: Page | null;
  csrf: string;
  /** An error (or notice) shown above the page. */
  banner?: Html | null;
  /** Reload the page every N seconds (a job the runner does not stream is running). */
  refresh?: number;
}

const NAV: [Page, string, string][] = [
  ['overview', '/', 'Overview'],
  ['groups', '/groups', 'Protection groups'],
  ['recovery-points', '/recovery-points', 'Recovery points'],
  ['jobs', '/jobs', 'Jobs'],
];

export function layout(frame: PageFrame, c: Common, body: Html): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${frame.title} · strata</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head>
<body${frame.refresh ? html` data-refresh="${frame.refresh}"` : ''}>
<header class="top"><div class="inner">
<a class="brand" href="/">strata<span>console</span></a>
<nav>${NAV.map(([id, href, label]) => html`<a href="${href}"${frame.active === id ? html` class="active" aria-current="page"` : ''}>${label}</a>`)}</nav>
<span class="host">${c.host}</span>
</div></header>
<main>
${frame.banner ?? ''}
${body}
</main>
<footer>Times in ${c.tz} · page made ${formatTime(c.now, c.tz)}</footer>
</body>
</html>
`.value;
}

// --- small pieces ---

const STATE_TONE: Record<string, string> = {
  completed: 'ok',
  running: 'info',
  warnings: 'warn',
  skipped: 'warn',
  interrupted: 'bad',
  failed: 'bad',
  present: 'ok',
  uploaded: 'ok',
  pending: 'warn',
  uploading: 'info',
  none: '',
  deleted: 'bad',
  absent: '',
  connected: 'ok',
  lost: 'bad',
  active: 'ok',
  expired: 'bad',
  deprovisioned: 'bad',
};

export function badge(text: string, tone = STATE_TONE[text] ?? ''): Html {
  return html`<span class="badge ${tone}">${text}</span>`;
}

export function errorBanner(e: ErrorPayload | { code: string; message: string }): Html {
  return html`<div class="banner error" role="alert" data-error-code="${e.code}"><code>${e.code}</code>${e.message}</div>`;
}

export function noticeBanner(text: string, tone: 'ok' | 'warn' = 'ok'): Html {
  return html`<div class="banner ${tone}" role="status">${text}</div>`;
}

function when(ms: number | null, c: Common): Html {
  if (ms === null) return html`<span class="muted">—</span>`;
  return html`<span title="${formatRelative(ms, c.now)}">${formatTime(ms, c.tz)}</span>`;
}

function ago(ms: number | null, c: Common): Html {
  if (ms === null) return html`<span class="muted">never</span>`;
  return html`<span title="${formatTime(ms, c.tz)}">${formatRelative(ms, c.now)}</span>`;
}

function csrfField(csrf: string): Html {
  return html`<input type="hidden" name="_csrf" value="${csrf}">`;
}

/** "12.0 MiB of 40.0 MiB (30%) · 8.1 MiB/s · 3s left": what the live progress line says (also sent by the event stream). */
export function progressText(p: JobProgress, rate: number | null): string {
  if ((p.detail as { phase?: unknown } | undefined)?.phase === 'pre command') return 'running the pre command';
  const fmt = (v: number) => (p.unit === 'bytes' ? formatBytes(v) : `${v}`);
  const parts = [p.total ? `${fmt(p.done)} of ${fmt(p.total)} (${Math.min(100, Math.floor((p.done / p.total) * 100))}%)` : fmt(p.done)];
  if (rate !== null) parts.push(p.unit === 'bytes' ? formatRate(rate) : `${rate.toFixed(1)}/s`);
  if (rate && p.total && p.total > p.done) parts.push(`${formatDuration(((p.total - p.done) / rate) * 1000)} left`);
  return parts.join(' · ');
}

function liveBlock(job: RunningJob, c: Common): Html {
  const p = job.progress;
  const title = html`<strong>${job.kind}</strong>${job.group ? html` of <strong>${job.group}</strong>` : ''} · <a href="/jobs/${job.id}">job ${job.id}</a>`;
  return html`<div class="live" data-live-job="${job.id}" data-kind="${job.kind}">
<div class="line"><span>${title}</span><span class="muted">${p?.label ?? 'starting'} · started ${ago(job.started, c)}</span></div>
${p && p.total ? html`<progress max="${p.total}" value="${p.done}"></progress>` : html`<progress></progress>`}
<div class="line"><span class="text">${p ? progressText(p, job.rate) : 'waiting for the first progress report'}</span></div>
</div>`;
}

function runningCard(running: RunningJob[], c: Common): Html {
  return html`<section class="card" id="running"><div class="card-head"><h2>Running now</h2><span class="muted small">${running.length} job(s)</span></div>
${running.length === 0 ? html`<div class="empty">No job is running.</div>` : html`<div class="grid">${running.map((j) => liveBlock(j, c))}</div>`}
</section>`;
}

function usageCard(title: string, u: FsUsage, ours: string): Html {
  const usedAll = u.total !== null && u.free !== null ? u.total - u.free : null;
  return html`<section class="card stat"><div class="label">${title}</div>
<div class="value">${formatBytes(u.used)}</div>
<div class="sub path">${u.path}</div>
${
  u.total !== null && usedAll !== null
    ? html`${meterSvg(
        [
          { value: Math.min(u.used, usedAll), tone: 'ours', title: `${ours}: ${formatBytes(u.used)}` },
          { value: Math.max(0, usedAll - u.used), tone: 'other', title: `other data: ${formatBytes(Math.max(0, usedAll - u.used))}` },
        ],
        u.total,
      )}<div class="sub">${formatBytes(u.free!)} free of ${formatBytes(u.total)} (file system)</div>`
    : html`<div class="sub">file system not readable: ${u.error ?? 'unknown'}</div>`
}
</section>`;
}

function jobSummary(j: JobView): string {
  if (j.error) return j.error;
  const r = j.result as Record<string, unknown> | null;
  if (!r) return '';
  if (Array.isArray(r['sources'])) {
    const sources = r['sources'] as { stats?: { files?: number; bytes?: number; bytesRead?: number; newBytes?: number } | null }[];
    const files = sources.reduce((a, s) => a + (s.stats?.files ?? 0), 0);
    const bytes = sources.reduce((a, s) => a + (s.stats?.bytes ?? 0), 0);
    const added = sources.reduce((a, s) => a + (s.stats?.newBytes ?? 0), 0);
    const cloud = r['cloud'] as { bytesUploaded?: number } | null | undefined;
    return `${files} files, ${formatBytes(bytes)}; ${formatBytes(added)} new${cloud && typeof cloud.bytesUploaded === 'number' ? `; ${formatBytes(cloud.bytesUploaded)} uploaded` : ''}${r['cloudError'] ? `; upload: ${String(r['cloudError'])}` : ''}`;
  }
  if (typeof r['files'] === 'number' && typeof r['bytes'] === 'number') return `${r['files']} files, ${formatBytes(r['bytes'] as number)} to ${String(r['target'] ?? '')}`;
  if (typeof r['problems'] === 'number') return `${r['problems']} problem(s) in ${String(r['packs'] ?? '?')} packs`;
  if (typeof r['packsUploaded'] === 'number') return `${r['packsUploaded']} packs, ${formatBytes((r['bytesUploaded'] as number) ?? 0)} uploaded`;
  if (typeof r['bytesFreed'] === 'number') return `freed ${formatBytes(r['bytesFreed'] as number)}`;
  return '';
}

function jobRow(j: JobView, c: Common): Html {
  const took = j.ended !== null ? formatDuration(j.ended - j.started) : j.live ? 'running' : '—';
  return html`<tr data-job-id="${j.id}" data-state="${j.state}">
<td class="num"><a href="/jobs/${j.id}">${j.id}</a></td>
<td>${j.kind}</td><td>${j.group ?? html`<span class="muted">—</span>`}</td>
<td>${badge(j.state)}</td><td class="muted">${j.trigger ?? '—'}</td>
<td class="num">${when(j.started, c)}</td><td class="num">${took}</td>
<td class="small">${jobSummary(j)}${j.failedFiles.length ? html` · <a href="/jobs/${j.id}#failed">${j.failedFiles.length} file(s) failed</a>` : ''}</td>
</tr>`;
}

function jobsTable(jobs: JobView[], c: Common): Html {
  if (jobs.length === 0) return html`<div class="empty">No jobs yet.</div>`;
  return html`<table class="jobs"><thead><tr><th class="num">ID</th><th>Kind</th><th>Group</th><th>State</th><th>Trigger</th><th class="num">Started</th><th class="num">Took</th><th>Result</th></tr></thead>
<tbody>${jobs.map((j) => jobRow(j, c))}</tbody></table>`;
}

function backupForm(group: string, online: boolean, csrf: string, from: string): Html {
  return html`<form class="inline actions" method="post" action="/actions/backup">
${csrfField(csrf)}<input type="hidden" name="group" value="${group}"><input type="hidden" name="from" value="${from}">
${online ? html`<select name="to" aria-label="where to"><option value="">disk, then cloud</option><option value="disk">disk only</option><option value="cloud">latest to cloud</option></select>` : ''}
<button type="submit" data-action="backup" data-group="${group}">Back up now</button>
</form>`;
}

/** The first clause of a gate message ("backup to disk stopped: subscription expired (since …)"). */
function firstClause(message: string): string {
  return message.split('; ')[0]!;
}

/** Under a button the gate would refuse now: why, in short (the full line is its tooltip, and the answer to a click). */
function refusalNote(gate: { decisions: Record<Operation, GateDecision> } | null, op: Operation): Html {
  const d = gate?.decisions[op];
  if (!d || d.allowed) return html``;
  return html`<div class="refusal" data-refusal="${op}" title="${d.message}">${firstClause(d.message)}</div>`;
}

// --- overview ---

const OPERATION_LABEL: Record<Operation, string> = {
  'backup-disk': 'Backup to disk',
  'backup-cloud': 'Backup to cloud',
  'restore-disk': 'Restore from disk',
  'restore-cloud': 'Restore from cloud',
};

export function overviewPage(m: OverviewModel, frame: PageFrame): string {
  const g = m.gate;
  const f = m.figures;
  const decisions: Operation[] = ['backup-disk', 'backup-cloud', 'restore-disk', 'restore-cloud'];
  const gateCard = g
    ? html`<section class="card" id="gate"><div class="card-head"><h2>Gating</h2><span class="muted small">rule <code>${g.decisions['backup-disk'].rule}</code></span></div>
<div class="grid four">
<div class="stat"><div class="label">Connectivity</div><div class="value" data-gate="connectivity">${badge(g.connectivity)}</div><div class="sub">last contact ${ago(g.lastContact ?? null, m)}</div></div>
<div class="stat"><div class="label">Subscription</div><div class="value" data-gate="subscription">${badge(g.subscription)}</div><div class="sub">${g.subscriptionSince ? html`since ${when(g.subscriptionSince, m)}` : ''} <span class="muted">(${g.subscriptionSource})</span></div></div>
<div class="stat"><div class="label">Vault</div><div class="value text">${g.vault ? g.vault.vaultName : html`<span class="muted">not registered</span>`}</div><div class="sub">${g.serverId ? html`server <span class="mono">${shortId(g.serverId)}</span>` : html`run <code>strata register</code>`}</div></div>
<div class="stat"><div class="label">Last contact</div><div class="value text">${when(g.lastContact ?? null, m)}</div><div class="sub">lost after 15 days without contact</div></div>
</div>
<div class="decisions">${decisions.map(
        (op) => html`<div class="decision" data-operation="${op}" data-allowed="${String(g.decisions[op].allowed)}">${badge(g.decisions[op].allowed ? 'allowed' : 'stopped', g.decisions[op].allowed ? 'ok' : 'bad')}<span><strong>${OPERATION_LABEL[op]}</strong><br><span class="msg">${g.decisions[op].allowed && g.decisions[op].rule === 'connected-active' ? 'no restriction in force' : g.decisions[op].message}</span></span></div>`,
      )}</div>
</section>`
    : html`<section class="card" id="gate"><h2>Gating</h2><div class="banner warn">The gating state is unknown: ${m.gateError ?? ''}</div></section>`;
  const pointsOnDisk = f.recoveryPoints.filter((r) => r.copy === 'disk').reduce((a, r) => a + r.count, 0);
  const pointsInCloud = f.recoveryPoints.filter((r) => r.copy === 'cloud').reduce((a, r) => a + r.count, 0);
  const body = html`<h1>Overview</h1>
${g && !g.registered ? noticeBanner('This server is not registered to a vault: nothing can be backed up (not even to disk) until `strata register --vault-credentials FILE` has run.', 'warn') : ''}
${gateCard}
<div class="grid four" id="figures">
<section class="card stat"><div class="label">Protected</div><div class="value">${formatBytes(f.bytesProtected)}</div><div class="sub">latest recovery point of each data source</div></section>
<section class="card stat"><div class="label">Stored on disk</div><div class="value">${formatBytes(f.bytesStored.disk)}</div><div class="sub">${pointsOnDisk} recovery point(s); ${formatBytes(f.bytesDeduplicated)} deduplicated</div></section>
<section class="card stat"><div class="label">In the vault</div><div class="value">${formatBytes(f.bytesStored.cloud)}</div><div class="sub">${pointsInCloud} recovery point(s) in the cloud</div></section>
<section class="card stat"><div class="label">Upload backlog</div><div class="value">${formatBytes(f.uploadBacklogBytes)}</div><div class="sub">local packs waiting for the vault</div></section>
</div>
<div class="grid two" id="usage">
${usageCard('Storage pool', m.pool, 'packs in the pool')}
${usageCard('Scratch area', m.scratch, 'staged and recovery files')}
</div>
<section class="card" id="groups"><div class="card-head"><h2>Protection groups</h2><a class="small" href="/groups">details</a></div>
${
  m.groups.length === 0
    ? html`<div class="empty">No protection group in the config.</div>`
    : html`<table><thead><tr><th>Group</th><th>Last job</th><th>Latest recovery point</th><th>Next run</th><th></th></tr></thead><tbody>
${m.groups.map(
  (x) => html`<tr data-group="${x.name}"><td><strong>${x.name}</strong></td>
<td>${x.lastJob ? html`${badge(x.lastJob.state)} <a href="/jobs/${x.lastJob.id}">${x.lastJob.kind}</a> <span class="muted small">${ago(x.lastJob.started, m)}</span>` : html`<span class="muted">none yet</span>`}</td>
<td>${x.latest ? html`<a href="/recovery-points/${x.latest.id}">${formatTime(x.latest.time, m.tz)}</a> ${copies(x.latest)}` : html`<span class="muted">none</span>`}</td>
<td class="small">${x.next !== null ? html`${formatTime(x.next, m.tz)} <span class="muted">(${formatRelative(x.next, m.now)})</span>` : '—'}</td>
<td>${backupForm(x.name, false, frame.csrf, 'overview')}</td></tr>`,
)}
</tbody></table>${refusalNote(g, 'backup-disk')}`
}
</section>
${runningCard(m.running, m)}
<section class="card" id="check"><div class="card-head"><h2>Check the pool</h2></div>
<form class="actions" method="post" action="/actions/check">${csrfField(frame.csrf)}<input type="hidden" name="from" value="overview">
<label class="small"><input type="checkbox" name="readData" value="1"> also read and verify every pack (<code>--read-data</code>)</label>
<button type="submit" class="secondary" data-action="check">Run check</button></form>
</section>`;
  return layout(frame, m, body);
}

// --- protection groups ---

export function groupsPage(m: GroupsModel, frame: PageFrame): string {
  const stopped = m.gate && !m.gate.decisions['backup-disk'].allowed ? m.gate.decisions['backup-disk'] : null;
  const body = html`<h1>Protection groups</h1>
${stopped && !frame.banner ? html`<div class="banner warn" data-gate-refusal>${stopped.message}</div>` : ''}
${m.gateError ? noticeBanner(`The gating state is unknown: ${m.gateError}`, 'warn') : ''}
${m.groups.length === 0 ? html`<div class="card empty">No protection group in the config.</div>` : ''}
${m.groups.map((x) => {
  const g = x.config;
  const nextDisk = x.next.find((n) => n.kind === 'disk');
  const nextOnline = x.next.find((n) => n.kind === 'online');
  const r = g.online?.retention;
  return html`<section class="card group" data-group="${g.name}"><div class="card-head"><h2>${g.name}</h2>
<div>${backupForm(g.name, Boolean(g.online), frame.csrf, 'groups')}</div></div>
${refusalNote(m.gate, 'backup-disk')}
<div class="grid two">
<div><h3>Data sources</h3><table><tbody>${g.sources.map(
    (s) => html`<tr><td class="path">${s.path}</td><td>${badge(s.type ?? 'directory', 'info')}</td><td class="small muted">${s.exclude?.length ? html`excludes ${s.exclude.map((e, i) => html`${i ? ', ' : ''}<code>${e}</code>`)}` : 'no exclusions'}${s.pre || s.post ? html`<br>hooks: ${s.pre ? html`pre <code>${s.pre}</code> ` : ''}${s.post ? html`post <code>${s.post}</code>` : ''}` : ''}</td></tr>`,
  )}</tbody></table></div>
<div><h3>Schedules and retention</h3><dl class="kv">
<dt>Disk</dt><dd><code>${g.disk.syncFrequency}</code> · kept ${g.disk.retentionDays} day(s)</dd>
<dt>Next to disk</dt><dd>${nextDisk ? html`${formatTime(nextDisk.due, m.tz)} <span class="muted">(${formatRelative(nextDisk.due, m.now)})</span>` : '—'}</dd>
<dt>Online</dt><dd>${g.online ? html`<code>${g.online.schedule}</code> · daily ${r!.daily} d${r!.weekly ? `, weekly ${r!.weekly} w` : ''}${r!.monthly ? `, monthly ${r!.monthly} m` : ''}${r!.yearly ? `, yearly ${r!.yearly} y` : ''}` : html`<span class="muted">no online protection (disk only)</span>`}</dd>
${g.online ? html`<dt>Next to cloud</dt><dd>${nextOnline ? html`${formatTime(nextOnline.due, m.tz)} <span class="muted">(${formatRelative(nextOnline.due, m.now)})</span>` : '—'}</dd>` : ''}
<dt>Recovery points</dt><dd><a href="/recovery-points?group=${encodeURIComponent(g.name)}">${x.diskPoints} on disk, ${x.cloudPoints} in the cloud</a>${x.latest ? html` · latest ${ago(x.latest.time, m)}` : ''}</dd>
<dt>Last job</dt><dd>${x.lastJob ? html`${badge(x.lastJob.state)} <a href="/jobs/${x.lastJob.id}">${x.lastJob.kind} (job ${x.lastJob.id})</a> ${ago(x.lastJob.started, m)}${x.lastJob.error ? html`<div class="small muted" title="${x.lastJob.error}">${firstClause(x.lastJob.error)}</div>` : ''}` : html`<span class="muted">none yet</span>`}</dd>
</dl></div>
</div></section>`;
})}
<section class="card"><h2>Daily prune</h2><div class="small">Retention is applied and unreferenced data removed ${m.pruneNext !== null ? html`next at ${formatTime(m.pruneNext, m.tz)} <span class="muted">(${formatRelative(m.pruneNext, m.now)})</span>` : 'never (no prune schedule)'}. The latest recovery point of each data source is always kept.</div></section>`;
  return layout(frame, m, body);
}

// --- recovery points ---

function dedupPercent(s: Record<string, number>): string {
  const bytes = s['bytes'] ?? 0;
  if (bytes <= 0) return '—';
  return `${Math.round(((bytes - Math.min(bytes, s['newBytes'] ?? 0)) / bytes) * 100)}%`;
}

/** Where a point is: "disk" and "cloud" badges (or what keeps it from being there). */
function copies(p: RecoveryPointRow): Html {
  const disk = p.diskState === 'present' ? badge('disk', 'ok') : badge(p.diskState === 'absent' ? 'not on disk' : `disk ${p.diskState}`, '');
  const cloud = p.cloudState === 'none' ? '' : p.cloudState === 'uploaded' ? badge('cloud', 'ok') : badge(`cloud ${p.cloudState}`, STATE_TONE[p.cloudState] ?? '');
  return html`${disk} ${cloud}`;
}

function pointRow(p: RecoveryPointRow, c: Common): Html {
  const s = p.stats;
  return html`<tr data-rp="${p.id}">
<td class="num">${formatTime(p.time, c.tz)}</td>
<td><a class="mono" href="/recovery-points/${p.id}">${shortId(p.id)}</a></td>
<td class="path">${p.source}</td>
<td class="copies">${copies(p)}</td>
<td class="num">${s['files'] ?? 0}</td><td class="num">${formatBytes(s['bytes'] ?? 0)}</td>
<td class="num">${formatBytes(s['newBytes'] ?? 0)}</td><td class="num">${formatBytes(s['storedBytes'] ?? 0)}</td>
<td class="num">${dedupPercent(s)}</td>
<td>${p.diskState === 'present' ? html`<a href="/recovery-points/${p.id}#restore">Restore…</a>` : ''}</td>
</tr>`;
}

export function recoveryPointsPage(m: RecoveryPointsModel, frame: PageFrame): string {
  const body = html`<h1>Recovery points</h1>
${m.groups.length > 1 || m.selected ? html`<div class="actions small">Show: <a href="/recovery-points"${m.selected === null ? html` class="active"` : ''}>all groups</a>${m.groups.map((g) => (m.selected ? '' : html` · <a href="/recovery-points?group=${encodeURIComponent(g.name)}">${g.name || '(ad hoc)'}</a>`))}</div><br>` : ''}
${m.groups.length === 0 ? html`<div class="card empty">No recovery point yet.</div>` : ''}
${m.groups.map((g) => {
  const name = g.name || '(ad hoc)';
  const newest = [...g.points].reverse();
  let cumulative = 0;
  const growth = g.points.map((p) => {
    cumulative += p.stats['storedBytes'] ?? 0;
    return { time: p.time, value: cumulative, title: `${formatTime(p.time, m.tz)}: +${formatBytes(p.stats['storedBytes'] ?? 0)} stored, ${formatBytes(cumulative)} in all` };
  });
  const onDisk = g.points.filter((p) => p.diskState === 'present').length;
  const inCloud = g.points.filter((p) => p.cloudState === 'uploaded').length;
  return html`<section class="card rp-group" data-group="${g.name}"><div class="card-head"><h2>${name}</h2><span class="muted small">${onDisk} on disk · ${inCloud} in the cloud${g.configured ? '' : ' · not in the config'}</span></div>
${
  g.points.length === 0
    ? html`<div class="empty">No recovery point yet.</div>`
    : html`<h3>Timeline</h3>${timelineSvg(
        g.points.map((p) => ({ time: p.time, href: `/recovery-points/${p.id}`, onDisk: p.diskState === 'present', cloud: p.cloudState, title: `${formatTime(p.time, m.tz)} · ${shortId(p.id)} · ${p.source} · disk ${p.diskState}, cloud ${p.cloudState} · ${formatBytes(p.stats['bytes'] ?? 0)}` })),
        { tz: m.tz },
      )}
<div class="legend"><span><i class="l-disk"></i>in the local pool</span><span><i class="l-cloud"></i>in the vault</span><span><i class="l-pending"></i>waiting for the vault</span><span><i class="l-gone"></i>removed / deleted</span></div>
<h3>Storage growth (bytes stored by each recovery point, cumulative)</h3>${growthSvg(growth, { tz: m.tz, label: `storage growth of ${name}` })}
<h3>Points</h3><div class="scroll"><table class="points"><thead><tr><th class="num">Time</th><th>ID</th><th>Source</th><th>Copies</th><th class="num">Files</th><th class="num">Size</th><th class="num">New</th><th class="num">Stored</th><th class="num" title="share of the bytes already in the pool (unchanged files and duplicate chunks)">Dedup</th><th></th></tr></thead>
<tbody>${newest.map((p) => pointRow(p, m))}</tbody></table></div>`
}
</section>`;
})}`;
  return layout(frame, m, body);
}

export interface RestoreFormValues {
  item: string;
  target: string;
  onConflict: string;
}

function crumbs(rpId: string, dir: string): Html {
  const parts = dir ? dir.split('/') : [];
  return html`<div class="crumbs"><a href="/recovery-points/${rpId}">/</a>${parts.map((p, i) => html`<a href="/recovery-points/${rpId}?path=${encodeURIComponent(parts.slice(0, i + 1).join('/'))}">${p}</a>/`)}</div>`;
}

export function recoveryPointPage(m: RecoveryPointModel, frame: PageFrame, form: RestoreFormValues): string {
  const p = m.rp;
  const s = p.stats;
  const restoreStopped = m.gate && !m.gate.decisions['restore-disk'].allowed ? m.gate.decisions['restore-disk'] : null;
  const join = (name: string) => (m.dir ? `${m.dir}/${name}` : name);
  const body = html`<h1>Recovery point <span class="mono">${shortId(p.id)}</span></h1>
<div class="grid two">
<section class="card"><h2>Details</h2><dl class="kv">
<dt>Group</dt><dd>${p.group ? html`<a href="/recovery-points?group=${encodeURIComponent(p.group)}">${p.group}</a>` : '(ad hoc)'}</dd>
<dt>Source</dt><dd class="path">${p.source} ${badge(p.sourceType, 'info')}</dd>
<dt>Time</dt><dd>${formatTime(p.time, m.tz)} <span class="muted">(${formatRelative(p.time, m.now)})</span></dd>
<dt>Host</dt><dd>${p.host}</dd>
<dt>Copies</dt><dd>disk ${badge(p.diskState)} · cloud ${badge(p.cloudState)}</dd>
<dt>ID</dt><dd class="mono small wrap">${p.id}</dd>
${p.parent ? html`<dt>Parent</dt><dd><a class="mono" href="/recovery-points/${p.parent}">${shortId(p.parent)}</a></dd>` : ''}
</dl></section>
<section class="card"><h2>Size and deduplication</h2><dl class="kv">
<dt>Content</dt><dd>${formatBytes(s['bytes'] ?? 0)} in ${s['files'] ?? 0} files, ${s['dirs'] ?? 0} directories${s['symlinks'] ? `, ${s['symlinks']} symlinks` : ''}</dd>
<dt>Read</dt><dd>${formatBytes(s['bytesRead'] ?? 0)} from ${s['filesRead'] ?? 0} changed files (the rest came from the metadata cache)</dd>
<dt>New data</dt><dd>${formatBytes(s['newBytes'] ?? 0)} in ${s['newBlobs'] ?? 0} new chunks · ${dedupPercent(s)} already in the pool</dd>
<dt>Stored</dt><dd>${formatBytes(s['storedBytes'] ?? 0)} in ${s['packs'] ?? 0} pack(s), compressed and encrypted</dd>
<dt>Took</dt><dd>${formatDuration(s['durationMs'] ?? 0)}</dd>
<dt>Warnings</dt><dd>${p.warnings.length ? html`<ul class="files">${p.warnings.map((w) => html`<li>${w}</li>`)}</ul>` : 'none'}</dd>
</dl></section>
</div>
<section class="card" id="browse"><h2>Contents</h2>${crumbs(p.id, m.dir)}
${
  m.listError
    ? html`<div class="empty">${m.listError}</div>`
    : m.entries && m.entries.length
      ? html`<table><thead><tr><th>Name</th><th>Type</th><th class="num">Size</th><th class="num">Modified</th><th></th></tr></thead><tbody>${m.entries.map(
          (e) => html`<tr data-entry="${e.name}"><td class="path">${e.type === 'dir' ? html`<a href="/recovery-points/${p.id}?path=${encodeURIComponent(join(e.name))}">${e.name}/</a>` : e.name}${e.type === 'symlink' ? html` <span class="muted">→ ${e.target ?? ''}</span>` : ''}</td>
<td>${e.type}</td><td class="num">${e.type === 'file' ? formatBytes(e.size ?? 0) : ''}</td><td class="num">${formatTime(Number(BigInt(e.mtimeNs) / 1_000_000n), m.tz)}</td>
<td><a href="/recovery-points/${p.id}?${m.dir ? `path=${encodeURIComponent(m.dir)}&` : ''}item=${encodeURIComponent(join(e.name))}#restore">restore this</a></td></tr>`,
        )}</tbody></table>`
      : html`<div class="empty">This directory is empty.</div>`
}
</section>
<section class="card" id="restore"><h2>Restore</h2>
${p.diskState !== 'present' ? html`<div class="empty">This recovery point is not in the local pool; restore it from the cloud with <code>strata restore ${shortId(p.id)} --from cloud --target DIR</code>.</div>` : html`<form class="stack" method="post" action="/actions/restore">${csrfField(frame.csrf)}<input type="hidden" name="rp" value="${p.id}">
<label>Item <span class="hint">a file or directory inside the recovery point, such as <code>docs/report.txt</code>; empty restores everything. It is restored as <code>TARGET/its name</code>.</span><input type="text" name="item" value="${form.item}" placeholder="(everything)"></label>
<label>Target directory <span class="hint">an absolute path on this server; created if missing</span><input type="text" name="target" value="${form.target}" placeholder="/srv/restore" required></label>
<label>If something exists at the target <select name="onConflict">${[
        ['error', 'stop before writing anything (default)'],
        ['copy', 'write a copy next to it (name.restored)'],
        ['skip', 'keep the existing file'],
        ['overwrite', 'overwrite it'],
      ].map(([v, label]) => html`<option value="${v}"${form.onConflict === v ? ' selected' : ''}>${label}</option>`)}</select></label>
<div class="actions"><button type="submit" data-action="restore">Restore</button></div>
${restoreStopped ? html`<div class="refusal" data-refusal="restore-disk">${restoreStopped.message}</div>` : ''}
</form>`}
</section>`;
  return layout(frame, m, body);
}

// --- jobs ---

function throughputBars(history: JobView[], c: Common): Bar[] {
  const bars: Bar[] = [];
  for (const j of [...history].reverse()) {
    if (j.ended === null || j.ended <= j.started) continue;
    const r = j.result as Record<string, unknown> | null;
    let bytes: number | null = null;
    if (r && Array.isArray(r['sources'])) bytes = (r['sources'] as { stats?: { bytesRead?: number } | null }[]).reduce((a, s) => a + (s.stats?.bytesRead ?? 0), 0);
    else if (r && j.kind === 'restore' && typeof r['bytes'] === 'number') bytes = r['bytes'] as number;
    else if (r && typeof r['bytesUploaded'] === 'number') bytes = r['bytesUploaded'] as number;
    if (bytes === null) continue;
    const rate = (bytes * 1000) / (j.ended - j.started);
    bars.push({
      label: `#${j.id}`,
      value: rate,
      tone: j.state === 'completed' ? 'ok' : j.state === 'warnings' ? 'warn' : 'bad',
      title: `job ${j.id} ${j.kind}${j.group ? ` of ${j.group}` : ''} at ${formatTime(j.started, c.tz)}: ${formatBytes(bytes)} in ${formatDuration(j.ended - j.started)} = ${formatRate(rate)}`,
    });
  }
  return bars.slice(-24);
}

export function jobsPage(m: JobsModel, frame: PageFrame): string {
  const bars = throughputBars(m.history, m);
  const body = html`<h1>Jobs</h1>
${runningCard(m.running, m)}
<section class="card"><div class="card-head"><h2>Throughput</h2><span class="muted small">bytes read (backup), written (restore) or uploaded per second, per job</span></div>
${bars.length ? barsSvg(bars, { label: 'throughput per job', format: formatRate, bytes: true }) : html`<div class="empty">No finished job that moved data yet.</div>`}
</section>
<section class="card"><div class="card-head"><h2>History</h2>
<form class="inline actions" method="post" action="/actions/check">${csrfField(frame.csrf)}<input type="hidden" name="from" value="jobs"><button type="submit" class="secondary" data-action="check">Run check</button></form></div>
${jobsTable(m.history, m)}
</section>`;
  return layout(frame, m, body);
}

export function jobPage(c: Common, job: JobView, live: RunningJob | null, frame: PageFrame, knownError: ErrorPayload | null): string {
  const r = job.result as Record<string, unknown> | null;
  const sources = r && Array.isArray(r['sources']) ? (r['sources'] as { source: string; recoveryPoint: string | null; stats: Record<string, number> | null; warnings: string[]; error?: { code: string; message: string } }[]) : null;
  const body = html`<h1>Job ${job.id} · ${job.kind}${job.group ? html` of ${job.group}` : ''} ${badge(job.state)}</h1>
${job.error ? (job.state === 'skipped' && !knownError ? noticeBanner(`Skipped: ${job.error}`, 'warn') : errorBanner(knownError ?? { code: 'STRATA_JOB_FAILED', message: job.error })) : ''}
${live ? html`<section class="card" id="progress"><h2>Progress</h2>${liveBlock(live, c)}</section>` : ''}
<div class="grid two">
<section class="card"><h2>Job</h2><dl class="kv">
<dt>Kind</dt><dd>${job.kind}</dd><dt>Group</dt><dd>${job.group ?? '—'}</dd><dt>State</dt><dd data-state="${job.state}">${badge(job.state)}</dd>
<dt>Trigger</dt><dd>${job.trigger ?? '—'}</dd><dt>Started</dt><dd>${formatTime(job.started, c.tz)}</dd>
<dt>Ended</dt><dd>${job.ended !== null ? formatTime(job.ended, c.tz) : '—'}</dd><dt>Took</dt><dd>${job.ended !== null ? formatDuration(job.ended - job.started) : live ? `${formatDuration(c.now - job.started)} so far` : '—'}</dd>
</dl></section>
<section class="card"><h2>Result</h2>${r ? html`<div>${jobSummary({ ...job, error: null })}</div>` : html`<div class="empty">${live ? 'running' : 'no result recorded'}</div>`}
${
  sources
    ? html`<table><thead><tr><th>Source</th><th>Recovery point</th><th class="num">Files</th><th class="num">Read</th><th class="num">New</th></tr></thead><tbody>${sources.map(
        (s) => html`<tr><td class="path">${s.source}</td><td>${s.recoveryPoint ? html`<a class="mono" href="/recovery-points/${s.recoveryPoint}">${shortId(s.recoveryPoint)}</a>` : s.error ? html`<span class="refusal">${s.error.code}: ${s.error.message}</span>` : '—'}</td>
<td class="num">${s.stats?.['files'] ?? ''}</td><td class="num">${s.stats ? formatBytes(s.stats['bytesRead'] ?? 0) : ''}</td><td class="num">${s.stats ? formatBytes(s.stats['newBytes'] ?? 0) : ''}</td></tr>`,
      )}</tbody></table>`
    : ''
}
${r && typeof r['target'] === 'string' ? html`<div class="small">target <span class="path">${r['target'] as string}</span></div>` : ''}
</section>
</div>
<section class="card" id="failed"><h2>Files that failed (${job.failedFiles.length})</h2>
${job.failedFiles.length ? html`<ul class="files">${job.failedFiles.map((f) => html`<li>${f}</li>`)}</ul>` : html`<div class="empty">None.</div>`}
</section>
${r ? html`<section class="card"><details><summary>Full result (JSON)</summary><pre class="json">${JSON.stringify(r, null, 2)}</pre></details></section>` : ''}`;
  return layout(frame, c, body);
}

export function unauthorizedPage(reason: string, tokenFile: string): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>strata console: sign in</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/assets/console.css"></head>
<body><header class="top"><div class="inner"><span class="brand">strata<span>console</span></span></div></header>
<main><section class="card"><h1>Sign in</h1><p>${reason}</p>
<p>Open the address the daemon printed when it started (it ends in <code>?token=…</code>), or append <code>?token=</code> and the token in <code class="path">${tokenFile}</code> (readable only by the daemon's user) to this page's address. The daemon makes a new token each time it starts.</p></section></main></body></html>`.value;
}
