// The console's only two static files, kept as strings so that the TypeScript build ships them (no
// asset step): one stylesheet and one small script. The script only enhances: every page works without it.

export const CONSOLE_CSS = `
:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1d2430; --muted: #667085; --line: #e3e6eb; --accent: #2457c5;
  --ok: #1e8a4c; --ok-bg: #e6f4ec; --warn: #a86400; --warn-bg: #fdf1dc; --bad: #b42318; --bad-bg: #fdecea;
  --info-bg: #eaf0fb; --mono: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
}
* { box-sizing: border-box; }
html { background: var(--bg); }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--ink); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono { font-family: var(--mono); font-size: 12.5px; }
header.top { background: #16213a; color: #fff; }
header.top .inner { max-width: 1160px; margin: 0 auto; padding: 0 20px; display: flex; align-items: center; gap: 28px; height: 52px; }
header.top .brand { font-weight: 700; font-size: 17px; letter-spacing: .3px; color: #fff; }
header.top .brand span { color: #8fb0ff; font-weight: 400; margin-left: 6px; font-size: 13px; }
header.top nav { display: flex; gap: 4px; flex: 1; }
header.top nav a { color: #c9d3e8; padding: 6px 12px; border-radius: 6px; }
header.top nav a:hover { background: #24314f; text-decoration: none; }
header.top nav a.active { background: #2d3d63; color: #fff; }
header.top .host { color: #9fb0cf; font-size: 12.5px; }
main { max-width: 1160px; margin: 0 auto; padding: 22px 20px 40px; }
h1 { font-size: 21px; margin: 0 0 16px; font-weight: 650; }
h2 { font-size: 15px; margin: 0 0 12px; font-weight: 650; }
h3 { font-size: 13.5px; margin: 14px 0 8px; font-weight: 650; color: var(--muted); text-transform: uppercase; letter-spacing: .4px; }
.grid { display: grid; gap: 16px; }
.grid.two { grid-template-columns: repeat(2, minmax(0, 1fr)); }
.grid.three { grid-template-columns: repeat(3, minmax(0, 1fr)); }
.grid.four { grid-template-columns: repeat(4, minmax(0, 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; margin-bottom: 16px; }
.grid > .card { margin-bottom: 0; }
main > .grid { margin-bottom: 16px; }
.card-head { display: flex; align-items: center; justify-content: space-between; gap: 12px; margin-bottom: 10px; }
.card-head h2 { margin: 0; }
.stat .label { color: var(--muted); font-size: 12.5px; }
.stat .value { font-size: 22px; font-weight: 650; margin: 2px 0; }
.stat .sub { color: var(--muted); font-size: 12.5px; }
.stat .value.text { font-size: 15px; font-weight: 600; margin: 4px 0 5px; }
.stat .value .badge { font-size: 13px; padding: 2px 12px; }
.muted { color: var(--muted); }
.small { font-size: 12.5px; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .3px; padding: 6px 8px; border-bottom: 1px solid var(--line); }
td { padding: 7px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; white-space: nowrap; background: #eef0f3; color: var(--muted); }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.badge.warn { background: var(--warn-bg); color: var(--warn); }
.badge.bad { background: var(--bad-bg); color: var(--bad); }
.badge.info { background: var(--info-bg); color: var(--accent); }
.banner { border-radius: 10px; padding: 12px 16px; margin-bottom: 16px; border: 1px solid; }
.banner.error { background: var(--bad-bg); border-color: #f4c2bd; color: #7a1a12; }
.banner.warn { background: var(--warn-bg); border-color: #f0d3a1; color: #6b4200; }
.banner.ok { background: var(--ok-bg); border-color: #b7dfc6; color: #14532d; }
.banner code { font-weight: 700; margin-right: 6px; }
.decisions { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 8px 16px; margin-top: 12px; }
.decision { display: flex; gap: 10px; align-items: baseline; }
.decision .msg { color: var(--muted); font-size: 12.5px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; }
form.inline { display: inline; margin: 0; }
form.stack { display: grid; gap: 10px; max-width: 640px; }
form.stack label { display: grid; gap: 4px; font-weight: 600; font-size: 13px; }
form.stack .hint { font-weight: 400; color: var(--muted); font-size: 12.5px; }
input[type=text], select { font: inherit; font-weight: 400; padding: 6px 9px; border: 1px solid #cfd4dc; border-radius: 6px; background: #fff; color: var(--ink); }
input[type=text] { font-family: var(--mono); font-size: 13px; }
button, .button { font: inherit; font-weight: 600; padding: 6px 14px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; display: inline-block; }
button.secondary, .button.secondary { background: #fff; color: var(--accent); }
button:hover { filter: brightness(1.08); }
.actions { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.refusal { color: var(--bad); font-size: 12.5px; margin-top: 6px; }
progress { width: 100%; height: 10px; appearance: none; border: 0; border-radius: 5px; background: #e9ecf1; overflow: hidden; }
progress::-webkit-progress-bar { background: #e9ecf1; border-radius: 5px; }
progress::-webkit-progress-value { background: var(--accent); border-radius: 5px; }
progress::-moz-progress-bar { background: var(--accent); }
.live { display: grid; gap: 6px; }
.live .line { display: flex; justify-content: space-between; gap: 12px; font-size: 12.5px; }
.live .text { font-variant-numeric: tabular-nums; }
.chart { width: 100%; height: auto; display: block; }
.chart text { font: 11px system-ui, -apple-system, "DejaVu Sans", sans-serif; fill: var(--muted); }
.chart .lane { stroke: #d5dae2; stroke-width: 2; }
.chart .tick, .chart .grid { stroke: #eef0f3; stroke-width: 1; }
.chart .lane-label { font-weight: 600; }
.chart .pt-disk { fill: var(--accent); stroke: #fff; stroke-width: 1.5; }
.chart .pt-cloud { fill: #0e9f6e; stroke: #fff; stroke-width: 1.5; }
.chart .pt-pending { fill: #fff; stroke: var(--warn); stroke-width: 2; }
.chart .pt-gone { fill: #c4c9d2; }
.chart .pt-link:hover circle { stroke: var(--ink); }
.chart .area { fill: #2457c51a; }
.chart .line { fill: none; stroke: var(--accent); stroke-width: 2; }
.chart .bar-ok { fill: var(--accent); }
.chart .bar-warn { fill: #d99a2b; }
.chart .bar-bad { fill: #d9534a; }
.legend { display: flex; gap: 16px; font-size: 12px; color: var(--muted); margin-top: 6px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 5px; vertical-align: -1px; }
.legend .l-disk { background: var(--accent); } .legend .l-cloud { background: #0e9f6e; } .legend .l-pending { border: 2px solid var(--warn); } .legend .l-gone { background: #c4c9d2; }
.meter { width: 100%; height: 12px; display: block; margin: 6px 0 4px; border-radius: 3px; }
.meter .meter-bg { fill: #e9ecf1; } .meter .meter-ours { fill: var(--accent); } .meter .meter-other { fill: #9aa6ba; }
.files { max-height: 320px; overflow: auto; background: #fafbfc; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; margin: 0; }
.files li { font-family: var(--mono); font-size: 12.5px; list-style: none; }
details summary { cursor: pointer; color: var(--accent); }
pre.json { background: #fafbfc; border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow: auto; font-size: 12px; max-height: 360px; }
footer { max-width: 1160px; margin: 0 auto; padding: 0 20px 24px; color: var(--muted); font-size: 12px; }
.empty { color: var(--muted); padding: 8px 0; }
.path { font-family: var(--mono); font-size: 12.5px; word-break: break-all; }
.wrap { word-break: break-all; }
.scroll { overflow-x: auto; }
table.points td.path, td.copies { white-space: nowrap; word-break: normal; }
.crumbs { font-family: var(--mono); font-size: 13px; margin-bottom: 8px; }
@media (max-width: 900px) { .grid.two, .grid.three, .grid.four, .decisions { grid-template-columns: 1fr; } }
`;

/**
 * Live progress: each `[data-live-job]` block follows its job's server-sent events (`/jobs/ID/events`):
 * `progress` updates the bar and the line of text the server formatted; `end` reloads the page, which
 * then shows the result. Pages with `data-refresh` (a job the runner does not stream) reload every N s.
 */
export const CONSOLE_JS = `'use strict';
for (const el of document.querySelectorAll('[data-live-job]')) {
  const bar = el.querySelector('progress');
  const text = el.querySelector('.text');
  const es = new EventSource('/jobs/' + encodeURIComponent(el.dataset.liveJob) + '/events');
  es.addEventListener('progress', (e) => {
    const p = JSON.parse(e.data);
    if (bar) {
      if (p.total) { bar.max = p.total; bar.value = p.done; } else { bar.removeAttribute('value'); }
    }
    if (text) text.textContent = p.text;
    el.dataset.updates = String(Number(el.dataset.updates || 0) + 1);
  });
  es.addEventListener('end', () => { es.close(); el.dataset.ended = 'true'; setTimeout(() => location.reload(), 400); });
  es.onerror = () => { if (el.dataset.ended) return; es.close(); setTimeout(() => location.reload(), 3000); };
}
const refresh = Number(document.body.dataset.refresh || 0);
if (refresh > 0) setTimeout(() => location.reload(), refresh * 1000);
`;
