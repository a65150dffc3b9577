// The web console: HTTP on a loopback address (config `console.listen`), pages rendered on the server,
// one stylesheet, one small script for live progress (server-sent events), and `/metrics`. Actions go
// through the daemon's JobRunner, so they pass the same gate and take the same locks as the CLI, and
// their errors come back as the CLI's: a stable code and one line.
//
// Access: see auth.ts (a token made at start, then a cookie; CSRF tokens on forms; loopback Host only).
import http from 'node:http';
import path from 'node:path';
import { StrataError } from '../../errors.js';
import { httpStatus } from '../control-server.js';
import { errorPayload, type ErrorPayload, type JobEvent } from '../job-runner.js';
import { runCheck } from '../jobs.js';
import { collectMetrics, METRICS_CONTENT_TYPE, renderMetrics } from '../metrics.js';
import { CONSOLE_CSS, CONSOLE_JS } from './assets.js';
import { assertLoopbackListen, cookieName, csrfToken, hostHeaderAllowed, newToken, presentedToken, sameSecret, tokenFileOf, writeTokenFile } from './auth.js';
import type { Html } from './html.js';
import {
  cleanItemPath,
  groupsModel,
  jobsModel,
  overviewModel,
  RateTracker,
  rateOf,
  recoveryPointModel,
  recoveryPointsModel,
  runningJobs,
  timeZoneOf,
  type ConsoleDeps,
} from './model.js';
import { errorBanner, groupsPage, jobPage, jobsPage, overviewPage, progressText, recoveryPointPage, recoveryPointsPage, unauthorizedPage, type RestoreFormValues } from './pages.js';

export interface ConsoleOptions extends ConsoleDeps {
  /** "host:port" on a loopback address (anything else is refused); port 0 picks a free one. */
  listen: string;
  /** How long an action waits for its job to fail fast (a conflict, a refusal) before showing the job's page. Default 1500 ms. */
  settleMs?: number;
}

export interface ConsoleServer {
  /** "http://127.0.0.1:8470/" */
  readonly url: string;
  /** `url` with `?token=…`: opening it signs in. */
  readonly loginUrl: string;
  readonly tokenFile: string;
  /** Stops accepting and ends open connections (event streams included); the daemon aborts running jobs. */
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

const MAX_FORM = 64 * 1024;
const CONFLICT_POLICIES = ['error', 'copy', 'skip', 'overwrite'];

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function bad(message: string): StrataError {
  return new StrataError('STRATA_API_BAD_REQUEST', message, { kind: 'usage' });
}

async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new HttpError(415, 'forms are sent as application/x-www-form-urlencoded');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM) throw new HttpError(413, 'form too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** Resolves with how `p` settled if it settles within `ms`, else null (and leaves it running). */
async function settleWithin<T>(p: Promise<T>, ms: number, deps: ConsoleDeps): Promise<{ ok: true; value: T } | { ok: false; error: unknown } | null> {
  const stop = new AbortController();
  try {
    return await Promise.race([
      p.then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      ),
      deps.ctx.clock.sleep(ms, stop.signal).then(() => null),
    ]);
  } finally {
    stop.abort();
  }
}

export async function startConsole(options: ConsoleOptions): Promise<ConsoleServer> {
  const { ctx, runner } = options;
  const deps: ConsoleDeps = { ctx: options.ctx, runner: options.runner, scheduler: options.scheduler };
  const { host, port: wantedPort } = assertLoopbackListen(options.listen);
  const settleMs = options.settleMs ?? 1500;
  const token = newToken();
  const csrf = csrfToken(token);
  const tokenFile = tokenFileOf(ctx.config.stateDir);
  const rates = new RateTracker();
  /** Errors (with their codes) of jobs this console saw end, so a job's page can show the code. */
  const jobErrors = new Map<number, ErrorPayload>();
  const rememberError = (jobId: number, err: unknown) => {
    jobErrors.set(jobId, errorPayload(err));
    if (jobErrors.size > 200) jobErrors.delete(jobErrors.keys().next().value!);
  };
  let port = wantedPort;

  const common = () => ({ now: ctx.clock.now(), tz: timeZoneOf(deps), host: ctx.host });
  const frame = (title: string, active: 'overview' | 'groups' | 'recovery-points' | 'jobs' | null, banner: Html | null = null, refresh?: number) => ({
    title,
    active,
    csrf,
    banner,
    ...(refresh ? { refresh } : {}),
  });

  const send = (res: http.ServerResponse, status: number, body: string, type: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra });
    res.end(body);
  };
  const sendHtml = (res: http.ServerResponse, status: number, page: string) => send(res, status, page, 'text/html; charset=utf-8');
  const redirect = (res: http.ServerResponse, location: string, extra: Record<string, string> = {}) => {
    res.writeHead(303, { ...SECURITY_HEADERS, location, 'content-length': 0, ...extra });
    res.end();
  };

  // --- pages ---

  const pages = {
    overview: async (banner: Html | null = null) => overviewPage(await overviewModel(deps, rates), frame('Overview', 'overview', banner)),
    groups: async (banner: Html | null = null) => groupsPage(await groupsModel(deps), frame('Protection groups', 'groups', banner)),
    jobs: async (banner: Html | null = null) => jobsPage(jobsModel(deps, rates), frame('Jobs', 'jobs', banner)),
    recoveryPoint: async (id: string, query: URLSearchParams, form: RestoreFormValues | null, banner: Html | null = null) => {
      let dir = '';
      try {
        dir = cleanItemPath(query.get('path') ?? '');
      } catch (err) {
        throw bad((err as Error).message);
      }
      const m = await recoveryPointModel(deps, id, dir);
      const values = form ?? { item: query.get('item') ?? '', target: '', onConflict: 'error' };
      return recoveryPointPage(m, frame(`Recovery point ${m.rp.id.slice(0, 12)}`, 'recovery-points', banner), values);
    },
  };

  /** A failed action: the page the form came from, with the error (code and line) on top. */
  const actionFailed = async (res: http.ServerResponse, err: unknown, from: () => Promise<string>) => {
    const status = httpStatus(err);
    if (status === 500) ctx.log.error({ err }, 'console action failed');
    sendHtml(res, status, await from().catch(() => pageError(err)));
  };
  const pageError = (err: unknown) => jobsPage(jobsModel(deps, rates), frame('Error', null, errorBanner(errorPayload(err))));
  const withBanner = (name: string | null, banner: Html) => (name === 'overview' ? pages.overview(banner) : name === 'jobs' ? pages.jobs(banner) : pages.groups(banner));

  // --- actions ---

  async function backupAction(res: http.ServerResponse, form: URLSearchParams): Promise<void> {
    const from = form.get('from');
    try {
      const group = form.get('group') ?? '';
      if (!group) throw bad('choose a protection group');
      const to = form.get('to') ?? '';
      if (!['', 'disk', 'cloud', 'both'].includes(to)) throw bad('"to" must be one of disk, cloud, both');
      const started = await runner.backup({ group, ...(to ? { to: to as 'disk' } : {}) }, { trigger: 'ad hoc' });
      started.done.catch((err: unknown) => rememberError(started.jobId, err));
      ctx.log.info({ jobId: started.jobId, group, to: to || 'default' }, 'console: backup started');
      const early = await settleWithin(started.done, settleMs, deps);
      if (early && !early.ok) return void sendHtml(res, httpStatus(early.error), await withBanner(from, errorBanner(errorPayload(early.error))));
      redirect(res, `/jobs/${started.jobId}`);
    } catch (err) {
      await actionFailed(res, err, async () => withBanner(from, errorBanner(errorPayload(err))));
    }
  }

  async function restoreAction(res: http.ServerResponse, form: URLSearchParams): Promise<void> {
    const rp = form.get('rp') ?? '';
    const values: RestoreFormValues = { item: form.get('item') ?? '', target: form.get('target') ?? '', onConflict: form.get('onConflict') ?? 'error' };
    const again = (banner: Html) => pages.recoveryPoint(rp, new URLSearchParams(), values, banner);
    try {
      if (!/^[0-9a-f]{6,64}$/.test(rp)) throw bad('choose a recovery point');
      const target = values.target.trim();
      if (!target || !path.isAbsolute(target)) throw bad('the target directory must be an absolute path, such as /srv/restore');
      if (!CONFLICT_POLICIES.includes(values.onConflict)) throw bad(`"if something exists" must be one of ${CONFLICT_POLICIES.join(', ')}`);
      let item: string;
      try {
        item = cleanItemPath(values.item.trim());
      } catch (err) {
        throw new StrataError('STRATA_ITEM_INVALID', (err as Error).message, { kind: 'usage' });
      }
      const started = await runner.restore({ recoveryPoint: rp, target, onConflict: values.onConflict as 'error', ...(item ? { item } : {}) });
      started.done.catch((err: unknown) => rememberError(started.jobId, err));
      ctx.log.info({ jobId: started.jobId, rp, item: item || null, target, onConflict: values.onConflict }, 'console: restore started');
      const early = await settleWithin(started.done, settleMs, deps);
      if (early && !early.ok) return void sendHtml(res, httpStatus(early.error), await again(errorBanner(errorPayload(early.error))));
      redirect(res, `/jobs/${started.jobId}`);
    } catch (err) {
      await actionFailed(res, err, () => again(errorBanner(errorPayload(err))));
    }
  }

  async function checkAction(res: http.ServerResponse, form: URLSearchParams): Promise<void> {
    const from = form.get('from');
    try {
      const readData = form.get('readData') === '1';
      const started = await runner.check({ readData }, { trigger: 'ad hoc' });
      started.done.catch((err: unknown) => rememberError(started.jobId, err));
      ctx.log.info({ jobId: started.jobId, readData }, 'console: check started');
      const early = await settleWithin(started.done, settleMs, deps);
      if (early && !early.ok) return void sendHtml(res, httpStatus(early.error), await withBanner(from, errorBanner(errorPayload(early.error))));
      redirect(res, `/jobs/${started.jobId}`);
    } catch (err) {
      await actionFailed(res, err, async () => withBanner(from, errorBanner(errorPayload(err))));
    }
  }

  // --- live progress (server-sent events) ---

  function events(res: http.ServerResponse, jobId: number): void {
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    res.write('retry: 3000\n\n');
    const sendEvent = (event: string, data: unknown) => {
      if (!res.writableEnded && !res.destroyed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const started = runner.get(jobId)?.started ?? ctx.clock.now();
    const listener = (e: JobEvent) => {
      if (e.type === 'progress') {
        const p = e.progress;
        const rate = rateOf({ id: jobId, started, progress: p }, ctx.clock.now(), rates);
        sendEvent('progress', { jobId, label: p.label, done: p.done, total: p.total, unit: p.unit, rate, text: progressText(p, rate) });
      } else if (e.type === 'file-error') {
        sendEvent('file-error', { jobId, source: e.source, path: e.path, message: e.message });
      } else if (e.type === 'end') {
        if (e.error) jobErrors.set(jobId, e.error);
        rates.forget(jobId);
        sendEvent('end', { jobId, state: e.state, error: e.error ?? null });
        res.end();
      }
    };
    const unfollow = runner.follow(jobId, listener);
    if (!unfollow) {
      const job = runner.get(jobId);
      sendEvent('end', { jobId, state: job?.state ?? 'unknown', error: null });
      res.end();
      return;
    }
    const stopBeat = ctx.clock.every(15_000, () => {
      if (!res.writableEnded) res.write(': keepalive\n\n');
    });
    res.on('close', () => {
      unfollow();
      stopBeat();
    });
  }

  // --- the request handler ---

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://console');
    const p = url.pathname;
    if (!hostHeaderAllowed(req.headers.host)) return send(res, 421, 'the console answers only to a loopback host name (127.0.0.1, [::1] or localhost)\n', 'text/plain; charset=utf-8');
    if (req.method === 'GET' && p === '/assets/console.css') return send(res, 200, CONSOLE_CSS, 'text/css; charset=utf-8', { 'cache-control': 'max-age=300' });
    if (req.method === 'GET' && p === '/assets/console.js') return send(res, 200, CONSOLE_JS, 'text/javascript; charset=utf-8', { 'cache-control': 'max-age=300' });

    // Sign-in with ?token=: a cookie, then the same page without the token in the address.
    const given = url.searchParams.get('token');
    if (given !== null && req.method === 'GET') {
      if (!sameSecret(given, token)) return sendHtml(res, 401, unauthorizedPage('That token is not (or no longer) valid.', tokenFile));
      url.searchParams.delete('token');
      return redirect(res, url.pathname + url.search, { 'set-cookie': `${cookieName(port)}=${token}; Path=/; HttpOnly; SameSite=Strict` });
    }
    const presented = presentedToken(req.headers, port);
    if (presented === null || !sameSecret(presented, token)) {
      if (p === '/metrics') return send(res, 401, `a token is required: send "Authorization: Bearer <the token in ${tokenFile}>"\n`, 'text/plain; charset=utf-8', { 'www-authenticate': 'Bearer realm="strata"' });
      return sendHtml(res, 401, unauthorizedPage(presented === null ? 'The console needs the token the daemon made when it started.' : 'The token of this browser is no longer valid: the daemon has restarted since.', tokenFile));
    }

    if (req.method === 'POST') {
      const origin = req.headers.origin;
      if (origin && origin !== 'null' && !hostHeaderAllowed(new URL(origin).host)) throw new HttpError(403, 'cross-origin form refused');
      const form = await readForm(req);
      if (!sameSecret(form.get('_csrf') ?? '', csrf)) throw new HttpError(403, 'the form is out of date (the daemon restarted?): reload the page and try again');
      if (p === '/actions/backup') return backupAction(res, form);
      if (p === '/actions/restore') return restoreAction(res, form);
      if (p === '/actions/check') return checkAction(res, form);
      throw new HttpError(404, `no action ${p}`);
    }
    if (req.method !== 'GET') throw new HttpError(405, `${req.method} is not allowed`);

    if (p === '/') return sendHtml(res, 200, await pages.overview());
    if (p === '/groups') return sendHtml(res, 200, await pages.groups());
    if (p === '/recovery-points') return sendHtml(res, 200, recoveryPointsPage(recoveryPointsModel(deps, url.searchParams.get('group')), frame('Recovery points', 'recovery-points')));
    if (p === '/jobs') return sendHtml(res, 200, await pages.jobs());
    if (p === '/metrics') return send(res, 200, renderMetrics(await collectMetrics(ctx, { jobsRunning: runner.running().length })), METRICS_CONTENT_TYPE);
    let m: RegExpExecArray | null;
    if ((m = /^\/recovery-points\/([0-9a-f]{6,64})$/.exec(p))) {
      try {
        return sendHtml(res, 200, await pages.recoveryPoint(m[1]!, url.searchParams, null));
      } catch (err) {
        return sendHtml(res, httpStatus(err), recoveryPointsPage(recoveryPointsModel(deps, null), frame('Recovery points', 'recovery-points', errorBanner(errorPayload(err)))));
      }
    }
    if ((m = /^\/jobs\/(\d{1,15})\/events$/.exec(p))) return events(res, Number(m[1]));
    if ((m = /^\/jobs\/(\d{1,15})$/.exec(p))) {
      const id = Number(m[1]);
      const job = runner.get(id);
      if (!job) return sendHtml(res, 404, await pages.jobs(errorBanner({ code: 'STRATA_JOB_NOT_FOUND', message: `no job ${id}` })));
      const live = runningJobs(deps, rates).find((j) => j.id === id) ?? null;
      return sendHtml(res, 200, jobPage(common(), job, live, frame(`Job ${id}`, 'jobs'), jobErrors.get(id) ?? null));
    }
    throw new HttpError(404, `no page ${p}`);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch(async (err: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof HttpError) {
        const body = err.status === 404 ? await pages.overview(errorBanner({ code: 'STRATA_CONSOLE_NOT_FOUND', message: err.message })).catch(() => err.message) : err.message;
        return send(res, err.status, body, err.status === 404 ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8');
      }
      ctx.log.error({ err, url: req.url }, 'console request failed');
      const page = await pages.overview(errorBanner(errorPayload(err))).catch(() => null);
      if (page) sendHtml(res, httpStatus(err), page);
      else send(res, 500, `${errorPayload(err).code}: ${errorPayload(err).message}\n`, 'text/plain; charset=utf-8');
    });
  });
  server.requestTimeout = 60_000;
  server.headersTimeout = 20_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new StrataError('STRATA_CONSOLE_LISTEN', `the console cannot listen on ${options.listen}: ${err.code === 'EADDRINUSE' ? 'the address is in use (another daemon or program); change console.listen' : err.message}`, {
          kind: 'usage',
          cause: err,
        }),
      ),
    );
    server.listen({ host, port: wantedPort }, () => resolve());
  });
  const addr = server.address();
  if (addr && typeof addr === 'object') port = addr.port;
  server.on('error', (err) => ctx.log.error({ err }, 'console server error'));
  await writeTokenFile(tokenFile, token);
  const shownHost = host.includes(':') ? `[${host}]` : host;
  const url = `http://${shownHost}:${port}/`;
  ctx.log.info({ console: url, tokenFile }, 'console listening');
  return {
    url,
    loginUrl: `${url}?token=${token}`,
    tokenFile,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
