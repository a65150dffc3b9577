// End-to-end: the web console and /metrics of a real `strata daemon` (spawned through the CLI), registered
// to Azurite. The browser tests drive Debian's Chromium (/usr/bin/chromium) through playwright-core and
// are skipped where it is not installed (`npm test` needs nothing outside npm); .ci/run installs it.
//
// Screenshots go to a temp directory, or to docs/console/ with STRATA_CONSOLE_SCREENSHOTS=1.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { REPO, makeSandbox, runCli, type Sandbox } from '../helpers/cli.js';
import { startDaemonProcess, waitFor, type DaemonProcess } from '../helpers/daemon.js';
import { bytes, writeTree } from '../helpers/fs-tree.js';

/** Debian's Chromium (apt-get install chromium); STRATA_CHROMIUM names another binary (or a missing one, to see the skip). */
const CHROMIUM = process.env['STRATA_CHROMIUM'] ?? '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
const DAILY = { syncFrequency: '0 0 * * *', retentionDays: 30 };

let azurite: Azurite;
const cleanups: (() => Promise<unknown>)[] = [];
beforeAll(async () => {
  azurite = await startAzurite();
}, 60_000);
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  await azurite?.stop();
}, 60_000);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A registered sandbox with a pool and the console on a free loopback port. */
async function consoleSandbox(extra: Record<string, unknown>): Promise<{ sb: Sandbox; port: number }> {
  const port = await freePort();
  const sb = await makeSandbox({ console: { listen: `127.0.0.1:${port}` }, ...extra }, { vault: azurite.endpoint });
  cleanups.push(() => sb.cleanup());
  const init = await sb.strata(['init']);
  if (init.code !== 0) throw new Error(`strata init: ${init.stderr}`);
  return { sb, port };
}

async function daemon(sb: Sandbox): Promise<DaemonProcess> {
  const d = await startDaemonProcess(sb, { timeoutMs: 30_000 });
  cleanups.push(() => d.stop('SIGKILL'));
  return d;
}

const tokenOf = async (sb: Sandbox) => (await readFile(path.join(sb.state, 'console.token'), 'utf8')).trim();

function request(options: http.RequestOptions & { body?: string }): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ agent: false, timeout: 15_000, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(options.body);
  });
}

interface Scrape {
  types: Map<string, string>;
  samples: { name: string; labels: Record<string, string>; value: number }[];
  get(name: string, labels?: Record<string, string>): number | undefined;
}

/** Reads the Prometheus text format: every sample's family has a TYPE line before it; label values unescaped. */
function parseMetrics(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Scrape['samples'] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      types.set(t[1]!, t[2]!);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a metrics line: ${line}`);
    const family = types.has(m[1]!) ? m[1]! : m[1]!.replace(/_(sum|count)$/, '');
    if (!types.has(family)) throw new Error(`sample before its TYPE: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return {
    types,
    samples,
    get: (name, labels = {}) => samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value,
  };
}

describe('console and metrics over HTTP', () => {
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  });

  it('refuses a console on a non-loopback address, or on a port in use', async () => {
    for (const listen of ['0.0.0.0:8470', '[::]:8470', '192.168.1.10:8470']) {
      const sb = await makeSandbox({ console: { listen } });
      cleanups.push(() => sb.cleanup());
      const r = await runCli(['daemon', '--config', sb.config], { timeoutMs: 30_000 });
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^strata: error STRATA_CONFIG_INVALID: .*console\\.listen "${listen.replace(/[[\]]/g, '\\$&')}" is not a loopback address`));
    }
    // A console port already taken: the daemon does not start, says why in one line, and leaves nothing behind.
    const sb = await makeSandbox({});
    cleanups.push(() => sb.cleanup());
    expect((await sb.strata(['init'])).code).toBe(0);
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise((resolve) => taken.close(resolve)));
    const config = JSON.parse(await readFile(sb.config, 'utf8'));
    await writeFile(sb.config, JSON.stringify({ ...config, console: { listen: `127.0.0.1:${(taken.address() as net.AddressInfo).port}` } }));
    const busy = await runCli(['daemon', '--config', sb.config], { timeoutMs: 30_000 });
    expect(busy.code).toBe(2);
    expect(busy.stderr.trim().split('\n')).toHaveLength(1);
    expect(busy.stderr).toMatch(/^strata: error STRATA_CONSOLE_LISTEN: the console cannot listen on 127\.0\.0\.1:\d+: the address is in use/);
    expect(existsSync(path.join(sb.state, 'daemon.pid'))).toBe(false);
    expect(existsSync(path.join(sb.state, 'strata.sock'))).toBe(false);
  }, 60_000);

  it('serves /metrics on the socket and on the console (with the token), and guards the console', async () => {
    const { sb, port } = await consoleSandbox({ protectionGroups: [{ name: 'files', sources: [{ path: 'data' }], disk: DAILY, online: { schedule: '0 21 * * *', retention: { daily: 7 } } }] });
    await writeTree(path.join(sb.dir, 'data'), { 'a.txt': 'alpha', 'b.bin': bytes(7, 300_000), sub: { 'c.txt': 'gamma' } });
    await daemon(sb);
    const token = await tokenOf(sb);
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect((await stat(path.join(sb.state, 'console.token'))).mode & 0o777).toBe(0o600);
    const backup = await sb.json<{ state: string }>(['backup', 'files']); // through the daemon: disk, then the vault
    expect(backup.state).toBe('completed');

    const viaSocket = await request({ socketPath: path.join(sb.state, 'strata.sock'), path: '/metrics' });
    const viaConsole = await request({ host: '127.0.0.1', port, path: '/metrics', headers: { authorization: `Bearer ${token}` } });
    for (const r of [viaSocket, viaConsole]) {
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
      const m = parseMetrics(r.body);
      for (const name of [
        'strata_bytes_protected',
        'strata_bytes_stored',
        'strata_bytes_deduplicated',
        'strata_recovery_points',
        'strata_job_duration_seconds',
        'strata_jobs_total',
        'strata_upload_backlog_bytes',
        'strata_seconds_since_last_contact',
        'strata_subscription_state',
        'strata_connectivity_connected',
      ]) {
        expect(m.types.has(name), name).toBe(true);
      }
      expect(m.get('strata_bytes_protected')).toBe(5 + 300_000 + 5);
      expect(m.get('strata_recovery_points', { group: 'files', copy: 'disk' })).toBe(1);
      expect(m.get('strata_recovery_points', { group: 'files', copy: 'cloud' })).toBe(1);
      expect(m.get('strata_bytes_stored', { copy: 'disk' })).toBeGreaterThan(0);
      expect(m.get('strata_bytes_stored', { copy: 'cloud' })).toBe(m.get('strata_bytes_stored', { copy: 'disk' }));
      expect(m.get('strata_upload_backlog_bytes')).toBe(0);
      expect(m.get('strata_jobs_total', { kind: 'backup', state: 'completed' })).toBe(1);
      expect(m.get('strata_job_duration_seconds_count', { kind: 'backup', state: 'completed' })).toBe(1);
      expect(m.get('strata_subscription_state', { state: 'active' })).toBe(1);
      expect(m.get('strata_subscription_state', { state: 'expired' })).toBe(0);
      expect(m.get('strata_connectivity_connected')).toBe(1);
      expect(m.get('strata_seconds_since_last_contact')).toBeLessThan(120);
    }

    // Without the token: nothing but a 401 that says where the token is.
    const anonymous = await request({ host: '127.0.0.1', port, path: '/metrics' });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).toContain(path.join(sb.state, 'console.token'));
    expect((await request({ host: '127.0.0.1', port, path: '/' })).status).toBe(401);
    expect((await request({ host: '127.0.0.1', port, path: '/metrics', headers: { authorization: `Bearer ${'0'.repeat(64)}` } })).status).toBe(401);
    // A Host that is not loopback (DNS rebinding) is refused even with the token.
    expect((await request({ host: '127.0.0.1', port, path: '/metrics', headers: { host: 'evil.example:80', authorization: `Bearer ${token}` } })).status).toBe(421);
    // ?token= signs in: a cookie for this port, and the address without the token.
    const login = await request({ host: '127.0.0.1', port, path: `/jobs?token=${token}` });
    expect(login.status).toBe(303);
    expect(login.headers.location).toBe('/jobs');
    const cookie = login.headers['set-cookie']![0]!;
    expect(cookie).toMatch(new RegExp(`^strata_console_${port}=${token}; Path=/; HttpOnly; SameSite=Strict$`));
    const jobs = await request({ host: '127.0.0.1', port, path: '/jobs', headers: { cookie: cookie.split(';')[0]! } });
    expect(jobs.status).toBe(200);
    expect(jobs.headers['content-security-policy']).toMatch(/default-src 'none'/);
    expect(jobs.body).toContain('data-job-id="1"');
    // A form without the CSRF token is refused, and starts nothing.
    const forged = await request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/actions/backup',
      headers: { cookie: cookie.split(';')[0]!, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'group=files',
    });
    expect(forged.status).toBe(403);
    expect((await sb.json<unknown[]>(['jobs'])).length).toBe(2); // the backup and its upload (replicate)
  }, 120_000);
});

describe.skipIf(!HAS_CHROMIUM)('console in Chromium', () => {
  let browser: Browser;
  let shots: string;
  let sb: Sandbox;
  let port: number;
  let d: DaemonProcess;
  let firstPoint = '';
  let consolePoint = '';
  const pageErrors: string[] = [];

  beforeAll(async () => {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 30_000,
    });
    shots = process.env['STRATA_CONSOLE_SCREENSHOTS'] ? path.join(REPO, 'docs', 'console') : await mkdtemp(path.join(tmpdir(), 'strata-console-shots-'));
    await mkdir(shots, { recursive: true });
    ({ sb, port } = await consoleSandbox({
      protectionGroups: [
        // The first source's post command holds the job for a few seconds after that source is read, so
        // the console can show it running with its progress (the source's, which stands while it runs).
        { name: 'fileserver', sources: [{ path: 'data/files', exclude: ['*.tmp'], post: 'sleep 6' }, { path: 'data/mail' }], disk: { syncFrequency: '0 */6 * * *', retentionDays: 14 }, online: { schedule: '0 21 * * *', retention: { daily: 30, weekly: 12 } } },
        { name: 'app-db', sources: [{ path: 'data/app' }], disk: DAILY },
      ],
    }));
    await writeTree(path.join(sb.dir, 'data'), {
      files: { docs: { 'readme.txt': 'read me first\n', 'plan.txt': 'the plan\n' }, 'photo.raw': bytes(1, 6 * 1024 * 1024), 'skip.tmp': 'not backed up' },
      mail: { 'inbox.mbox': bytes(2, 1024 * 1024) },
      app: { 'state.json': '{"v":1}' },
    });
    // Two recovery points made with the CLI before the daemon starts (the timeline has a history).
    for (const change of [null, { 'scan.raw': bytes(3, 3 * 1024 * 1024) }]) {
      if (change) await writeTree(path.join(sb.dir, 'data', 'files'), change);
      const r = await sb.json<{ recoveryPoint?: { id: string }; sources: { recoveryPoint: string }[] }>(['backup', 'fileserver', '--to', 'disk']);
      if (!firstPoint) firstPoint = r.sources[0]!.recoveryPoint;
    }
    d = await daemon(sb);
  }, 120_000);

  afterAll(async () => {
    expect(pageErrors).toEqual([]); // no script error on any page
    await browser?.close();
    await d?.stop();
    if (!process.env['STRATA_CONSOLE_SCREENSHOTS'] && shots) await rm(shots, { recursive: true, force: true });
  }, 60_000);

  async function signedIn(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    // Script errors and CSP violations; an answer's own 4xx status (a refusal page) is not one.
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) pageErrors.push(msg.text());
    });
    const token = await tokenOf(sb);
    await page.goto(`http://127.0.0.1:${port}/?token=${token}`);
    expect(new URL(page.url()).search).toBe(''); // the token left the address bar
    return page;
  }

  it('shows the gating state, backs up a group with live progress, and the point appears on the timeline', async () => {
    const page = await signedIn();
    // Overview: connectivity, subscription, and the four decisions.
    await expect(page.locator('[data-gate="connectivity"]').textContent()).resolves.toBe('connected');
    await expect(page.locator('[data-gate="subscription"]').textContent()).resolves.toBe('active');
    for (const op of ['backup-disk', 'backup-cloud', 'restore-disk', 'restore-cloud']) {
      await expect(page.locator(`.decision[data-operation="${op}"]`).getAttribute('data-allowed')).resolves.toBe('true');
    }
    await expect(page.locator('#groups tr[data-group="fileserver"]').textContent()).resolves.toMatch(/completed\s*backup/);
    await page.screenshot({ path: path.join(shots, 'overview.png'), fullPage: true });

    // Protection groups: sources, schedules, retention, next runs; then "Back up now".
    await page.click('nav a[href="/groups"]');
    const group = page.locator('section.group[data-group="fileserver"]');
    await expect(group.textContent()).resolves.toMatch(/data\/files[\s\S]*excludes \*\.tmp[\s\S]*0 \*\/6 \* \* \*[\s\S]*kept 14 day\(s\)[\s\S]*Next to disk[\s\S]*daily 30 d, weekly 12 w/);
    await page.screenshot({ path: path.join(shots, 'groups.png'), fullPage: true });
    await group.locator('button[data-action="backup"]').click();

    // The job's page, live: progress arrives over the event stream while the job runs.
    await page.waitForURL(/\/jobs\/\d+$/);
    const jobId = Number(/\/jobs\/(\d+)$/.exec(page.url())![1]);
    const live = page.locator(`[data-live-job="${jobId}"]`);
    await expect(live.count()).resolves.toBe(1);
    await page.waitForSelector(`[data-live-job="${jobId}"][data-updates]`, { timeout: 15_000 }); // set by the script on each event
    await expect(live.locator('.text').textContent()).resolves.toMatch(/MiB of .*MiB \(\d+%\)/);
    // The jobs page shows it under "Running now" (screenshot while it runs).
    const jobsTab = await page.context().newPage();
    await jobsTab.goto(`http://127.0.0.1:${port}/jobs`);
    await jobsTab.waitForSelector(`[data-live-job="${jobId}"][data-updates]`, { timeout: 10_000 });
    await jobsTab.screenshot({ path: path.join(shots, 'jobs.png'), fullPage: true });
    await jobsTab.close();
    // When it ends, the page reloads with the result.
    await page.waitForSelector('h1 .badge.ok', { timeout: 60_000 });
    await expect(page.locator('h1').textContent()).resolves.toMatch(new RegExp(`Job ${jobId} · backup of fileserver\\s*completed`));
    const rpLink = page.locator('table a[href^="/recovery-points/"]').first();
    consolePoint = (await rpLink.getAttribute('href'))!.split('/').pop()!;
    expect(consolePoint).toMatch(/^[0-9a-f]{64}$/);

    // The recovery points page: the new point on the group's timeline, on disk and in the vault.
    await page.click('nav a[href="/recovery-points"]');
    const timeline = page.locator('section.rp-group[data-group="fileserver"] svg.timeline');
    await expect(timeline.locator(`a[href="/recovery-points/${consolePoint}"] circle.pt-disk`).count()).resolves.toBe(1);
    await expect(timeline.locator(`a[href="/recovery-points/${consolePoint}"] circle.pt-cloud`).count()).resolves.toBe(1);
    await expect(timeline.locator('a.pt-link').count()).resolves.toBe(3 * 2); // three points, two sources each
    await expect(page.locator(`tr[data-rp="${consolePoint}"] td.copies`).textContent()).resolves.toMatch(/^disk\s+cloud$/);
    await page.screenshot({ path: path.join(shots, 'recovery-points.png'), fullPage: true });
    await page.context().close();
  }, 150_000);

  it('restores one item to a target directory, says why a second one conflicts, and runs a check', async () => {
    const page = await signedIn();
    const target = path.join(sb.dir, 'restored');
    // From the timeline to the point, then into docs/ and "restore this".
    await page.goto(`http://127.0.0.1:${port}/recovery-points`);
    await page.locator(`svg.timeline a[href="/recovery-points/${firstPoint}"]`).click();
    await page.waitForURL(new RegExp(`/recovery-points/${firstPoint}$`));
    await page.locator('tr[data-entry="docs"] a', { hasText: 'docs/' }).click();
    await page.locator('tr[data-entry="readme.txt"] a', { hasText: 'restore this' }).click();
    await expect(page.locator('input[name="item"]').inputValue()).resolves.toBe('docs/readme.txt');
    await page.fill('input[name="target"]', target);
    await page.click('button[data-action="restore"]');
    await page.waitForURL(/\/jobs\/\d+$/);
    await page.waitForSelector('h1 .badge.ok', { timeout: 30_000 });
    expect(await readFile(path.join(target, 'readme.txt'), 'utf8')).toBe('read me first\n');
    expect(existsSync(path.join(target, 'plan.txt'))).toBe(false);

    // The same again: the restore refuses to overwrite, and the console says so with the CLI's code.
    await page.goto(`http://127.0.0.1:${port}/recovery-points/${firstPoint}?path=docs&item=docs%2Freadme.txt`);
    await page.fill('input[name="target"]', target);
    await page.click('button[data-action="restore"]');
    const banner = page.locator('.banner.error');
    await expect(banner.getAttribute('data-error-code')).resolves.toBe('STRATA_RESTORE_CONFLICT');
    await expect(banner.textContent()).resolves.toMatch(/restore would overwrite 1 existing item\(s\).*nothing was written/);
    await expect(page.locator('input[name="target"]').inputValue()).resolves.toBe(target); // the form keeps what was typed
    await page.selectOption('select[name="onConflict"]', 'copy');
    await page.click('button[data-action="restore"]');
    await page.waitForURL(/\/jobs\/\d+$/);
    await page.waitForSelector('h1 .badge.ok', { timeout: 30_000 });
    expect(await readFile(path.join(target, 'readme.txt.restored'), 'utf8')).toBe('read me first\n');

    // A check from the overview runs as a job of the daemon's runner: its own page, then the history.
    await page.click('nav a[href="/"]');
    await page.click('button[data-action="check"]');
    await page.waitForURL(/\/jobs\/\d+$/);
    await page.waitForSelector('h1 .badge.ok', { timeout: 60_000 });
    await expect(page.locator('h1').textContent()).resolves.toMatch(/check/);
    await page.goto(`http://127.0.0.1:${port}/jobs`);
    await expect(page.locator('tr[data-state="completed"]', { hasText: 'check' }).count()).resolves.toBe(1);
    await page.context().close();
  }, 150_000);

  it('with the subscription expired, the backup button explains the refusal', async () => {
    const oldToken = await tokenOf(sb);
    expect((await d.stop()).code).toBe(0);
    const config = JSON.parse(await readFile(sb.config, 'utf8'));
    await writeFile(sb.config, JSON.stringify({ ...config, subscription: { provider: 'static', state: 'expired' } }, null, 2));
    d = await daemon(sb);
    expect(await tokenOf(sb)).not.toBe(oldToken); // a new token at each start

    // A browser still holding the old cookie is asked to sign in again.
    const stale = await browser.newContext();
    await stale.addCookies([{ name: `strata_console_${port}`, value: oldToken, domain: '127.0.0.1', path: '/' }]);
    const stalePage = await stale.newPage();
    const resp = await stalePage.goto(`http://127.0.0.1:${port}/`);
    expect(resp!.status()).toBe(401);
    await expect(stalePage.locator('main').textContent()).resolves.toMatch(/no longer valid/);
    await stale.close();

    const page = await signedIn();
    await expect(page.locator('[data-gate="subscription"]').textContent()).resolves.toBe('expired');
    await expect(page.locator('.decision[data-operation="backup-disk"]').getAttribute('data-allowed')).resolves.toBe('false');
    await expect(page.locator('.decision[data-operation="restore-disk"]').getAttribute('data-allowed')).resolves.toBe('true');
    await page.click('nav a[href="/groups"]');
    // The note under the button says it before the click; the click gets the gate's own refusal.
    await expect(page.locator('section.group[data-group="fileserver"] .refusal').textContent()).resolves.toMatch(/backup to disk stopped: subscription expired/);
    await page.locator('section.group[data-group="fileserver"] button[data-action="backup"]').click();
    const banner = page.locator('.banner.error');
    await expect(banner.getAttribute('data-error-code')).resolves.toBe('STRATA_GATE_REFUSED');
    await expect(banner.textContent()).resolves.toMatch(/backup to disk stopped: subscription expired \(since \d{4}-\d\d-\d\d\); restores from disk and cloud remain allowed; backups resume when the subscription is active/);
    await page.screenshot({ path: path.join(shots, 'refusal.png'), fullPage: true });
    // Recorded as skipped, as from the CLI.
    const jobs = await sb.json<{ kind: string; group: string; state: string; error: string }[]>(['jobs']);
    expect(jobs[0]).toMatchObject({ kind: 'backup', group: 'fileserver', state: 'skipped', error: expect.stringMatching(/subscription expired/) });
    await page.context().close();
  }, 120_000);
});
