import { describe, expect, it } from 'vitest';
import type { RecoveryPointRow } from '../../catalog/catalog.js';
import { evaluateAll } from '../../cloud/gate.js';
import { niceBytesMax, niceMax, rangeOf, timeTicks, timelineSvg } from './charts.js';
import { escapeHtml, formatBytes, formatDuration, formatTime, html, raw } from './html.js';
import type { RecoveryPointModel } from './model.js';
import { errorBanner, progressText, recoveryPointPage } from './pages.js';

const EVIL = `<img src=x onerror="alert('x')">&`;

describe('console html', () => {
  it('escapes every interpolated value unless it is markup built by html or raw', () => {
    expect(escapeHtml(EVIL)).toBe('&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;');
    const inner = html`<b>${EVIL}</b>`;
    expect(html`<p title="${EVIL}">${inner}${[EVIL, raw('<i>ok</i>')]}${null}${undefined}${false}${0}</p>`.value).toBe(
      `<p title="${escapeHtml(EVIL)}"><b>${escapeHtml(EVIL)}</b>${escapeHtml(EVIL)}<i>ok</i>0</p>`,
    );
  });

  it('formats sizes, durations and times', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.00 GiB');
    expect(formatDuration(400)).toBe('0.4s');
    expect(formatDuration(75_000)).toBe('1m 15s');
    expect(formatDuration(3 * 3600_000 + 60_000)).toBe('3h 01m');
    expect(formatTime(Date.UTC(2026, 4, 1, 21, 5, 9), 'UTC')).toBe('2026-05-01 21:05:09');
    expect(formatTime(Date.UTC(2026, 4, 1, 21, 5, 9), 'Europe/Paris')).toBe('2026-05-01 23:05:09');
  });

  it('says progress with rate and time left', () => {
    expect(progressText({ label: 'backup /srv', done: 10 * 1024 ** 2, total: 40 * 1024 ** 2, unit: 'bytes' }, 5 * 1024 ** 2)).toBe('10.0 MiB of 40.0 MiB (25%) · 5.00 MiB/s · 6.0s left');
    expect(progressText({ label: 'prune', done: 3, total: null, unit: 'items' }, null)).toBe('3');
    expect(progressText({ label: 'backup /srv: pre command', done: 0, total: null, unit: 'bytes', detail: { phase: 'pre command' } }, 0)).toBe('running the pre command');
  });
});

describe('console charts', () => {
  it('picks readable ticks and axis bounds', () => {
    expect(niceMax(4.2)).toBe(5);
    expect(niceMax(0)).toBe(1);
    expect(niceBytesMax(4.77 * 1024 ** 2)).toBe(5 * 1024 ** 2);
    const day = 86_400_000;
    const r = rangeOf([Date.UTC(2026, 0, 1), Date.UTC(2026, 0, 15)]);
    const { step, ticks } = timeTicks(r);
    expect(step).toBe(7 * day); // 15.7 days shown: 2-day ticks would be 8
    expect(ticks.every((t) => t % step === 0 && t >= r.from && t <= r.to)).toBe(true);
    expect(ticks.length).toBeGreaterThanOrEqual(2);
    expect(timeTicks({ from: 0, to: 50_000 }).step).toBe(10_000);
    expect(rangeOf([1000])).toEqual({ from: 1000 - 20_000, to: 1000 + 20_000 });
  });

  it('draws each point once per lane, linked and with an escaped tooltip', () => {
    const svg = timelineSvg(
      [
        { time: 0, href: '/recovery-points/aa', title: EVIL, onDisk: true, cloud: 'uploaded' },
        { time: 60_000, href: '/recovery-points/bb', title: 'b', onDisk: true, cloud: 'pending' },
        { time: 120_000, href: '/recovery-points/cc', title: 'c', onDisk: false, cloud: 'none' },
      ],
      { tz: 'UTC' },
    ).value;
    expect(svg.match(/class="pt pt-disk"/g)).toHaveLength(2);
    expect(svg.match(/class="pt pt-cloud"/g)).toHaveLength(1);
    expect(svg.match(/class="pt pt-pending"/g)).toHaveLength(1);
    expect(svg.match(/class="pt pt-gone"/g)).toHaveLength(1);
    expect(svg).toContain(`<title>${escapeHtml(EVIL)}</title>`);
    expect(svg).not.toContain('<img');
  });
});

describe('console pages', () => {
  it('never lets a file name, a path or an error message become markup', () => {
    const rp: RecoveryPointRow = {
      id: 'ab'.repeat(32),
      group: 'files',
      source: `/srv/${EVIL}`,
      sourceType: 'directory',
      host: 'h',
      time: Date.UTC(2026, 4, 1),
      tree: 't',
      parent: null,
      stats: { files: 1, bytes: 10 },
      warnings: [`${EVIL}: permission denied`],
      diskState: 'present',
      cloudState: 'none',
      serverId: null,
    };
    const m: RecoveryPointModel = {
      now: Date.UTC(2026, 4, 2),
      tz: 'UTC',
      host: 'h',
      rp,
      dir: 'sub',
      entries: [{ name: EVIL, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: '1000000000000000000', size: 10 }],
      listError: null,
      gate: { connectivity: 'connected', subscription: 'expired', registered: true, serverId: 's', vault: null, subscriptionSource: 'static', decisions: evaluateAll({ connectivity: 'connected', subscription: 'expired' }) },
    };
    const page = recoveryPointPage(m, { title: 't', active: 'recovery-points', csrf: 'C"SRF', banner: errorBanner({ code: 'STRATA_X', message: EVIL }) }, { item: EVIL, target: '/t"><script>', onConflict: 'copy' });
    expect(page).not.toContain('<img');
    expect(page).not.toContain('<script>');
    expect(page).toContain(escapeHtml(EVIL));
    expect(page).toContain('value="C&quot;SRF"');
    expect(page).toContain(`?path=sub&amp;item=${escapeHtml(encodeURIComponent(`sub/${EVIL}`))}#restore`);
    expect(page).toContain('<option value="copy" selected>');
    expect(page).not.toContain('data-refusal="restore-disk"'); // restores stay allowed while the subscription is expired
  });
});
