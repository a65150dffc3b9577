// The daemon's control API: HTTP + JSON on a Unix socket, `<stateDir>/strata.sock`.
//
// Access control: Node cannot read the peer's credentials (SO_PEERCRED), so access is decided by the
// file system: the socket is made mode 0600 right after it is bound, inside a state directory the
// daemon keeps at 0700, so only the daemon's user (and root) can connect. Run the daemon as the user
// that runs the `strata` commands (or use sudo -u).
//
// Errors are `{ "error": { "code", "message", "kind" } }` with the codes the CLI uses in-process; a
// streamed answer (`application/x-ndjson`) is one JSON event per line until the job's `end` event.
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { Logger } from 'pino';
import { StrataError } from '../errors.js';
import { errorPayload, type JobEvent, type JobListener } from './job-runner.js';

export interface RouteRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
}

/** Writes one event of a streamed answer. */
export type Emit = (event: unknown) => void;

export type RouteResult =
  | { status?: number; json: unknown }
  | { stream: (emit: Emit, signal: AbortSignal) => Promise<void> }
  /** A plain-text answer (the Prometheus exposition of `GET /metrics`). */
  | { status?: number; text: string; contentType: string };

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  /** Path pattern with `:name` parameters, such as `/jobs/:id/events`. */
  path: string;
  handler: (req: RouteRequest) => Promise<RouteResult> | RouteResult;
}

export interface ControlServer {
  readonly socketPath: string;
  /** Stops accepting, ends open connections (streams included), removes the socket file. */
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;
/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
export const MAX_SOCKET_PATH = 107;

export function httpStatus(err: unknown): number {
  if (!(err instanceof StrataError)) return 500;
  if (err.code === 'STRATA_API_NOT_FOUND' || err.code === 'STRATA_JOB_NOT_FOUND') return 404;
  if (err.kind === 'gate') return 403;
  if (err.kind === 'usage' || err.kind === 'input') return 400;
  if (err.code === 'STRATA_JOB_RUNNING' || err.code === 'STRATA_LOCKED') return 409;
  return 500;
}

function compile(routes: Route[]) {
  return routes.map((r) => {
    const names: string[] = [];
    const re = new RegExp(
      '^' +
        r.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:([a-zA-Z]+)/g, (_, name: string) => {
          names.push(name);
          return '([^/]+)';
        }) +
        '$',
    );
    return { route: r, re, names };
  });
}

async function readBody(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new StrataError('STRATA_API_BAD_REQUEST', 'request body too large', { kind: 'usage' });
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new StrataError('STRATA_API_BAD_REQUEST', 'request body is not JSON', { kind: 'usage' });
  }
}

/**
 * Binds the socket (removing a stale file first: the caller holds the daemon lock, so no other daemon
 * owns it) and serves `routes`. Throws STRATA_SOCKET_PATH if the path is too long for a Unix socket.
 */
export async function startControlServer(socketPath: string, routes: Route[], log: Logger): Promise<ControlServer> {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new StrataError('STRATA_SOCKET_PATH', `the control socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter "stateDir" in the config`, { kind: 'usage' });
  }
  const table = compile(routes);
  const server = http.createServer((req, res) => {
    void handle(req, res);
  });
  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const closed = new AbortController();
    res.on('close', () => closed.abort());
    const url = new URL(req.url ?? '/', 'http://strata');
    try {
      let match: { route: Route; params: Record<string, string> } | null = null;
      let pathKnown = false;
      for (const { route, re, names } of table) {
        const m = re.exec(url.pathname);
        if (!m) continue;
        pathKnown = true;
        if (route.method !== req.method) continue;
        match = { route, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1]!)])) };
        break;
      }
      if (!match) {
        throw new StrataError('STRATA_API_NOT_FOUND', pathKnown ? `${req.method} is not allowed on ${url.pathname}` : `no such API: ${req.method} ${url.pathname}`, { kind: 'usage' });
      }
      const body = req.method === 'POST' ? await readBody(req) : {};
      const result = await match.route.handler({ params: match.params, query: url.searchParams, body, signal: closed.signal });
      if ('stream' in result) {
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
        res.flushHeaders();
        await result.stream((event) => {
          if (!res.writableEnded && !res.destroyed) res.write(JSON.stringify(event) + '\n');
        }, closed.signal);
        res.end();
      } else if ('text' in result) {
        res.writeHead(result.status ?? 200, { 'content-type': result.contentType, 'content-length': Buffer.byteLength(result.text) });
        res.end(result.text);
      } else {
        const text = JSON.stringify(result.json);
        res.writeHead(result.status ?? 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      }
    } catch (err) {
      const status = httpStatus(err);
      if (status === 500) log.error({ err, url: req.url }, 'control API request failed');
      if (res.headersSent) {
        // Mid-stream: the error becomes the last event.
        res.end(JSON.stringify({ type: 'error', error: errorPayload(err) }) + '\n');
        return;
      }
      const text = JSON.stringify({ error: errorPayload(err) });
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    }
  }

  await fs.rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await fs.chmod(socketPath, 0o600);
  server.on('error', (err) => log.error({ err }, 'control socket error'));
  return {
    socketPath,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await fs.rm(socketPath, { force: true });
    },
  };
}

/**
 * Collects a job's events from the moment it is started, and later streams them (first those already
 * collected) until its `end` event. Lets a handler start a job, answer an error if the start is
 * refused, and stream only once it is accepted.
 */
export class EventPipe {
  #buffer: JobEvent[] = [];
  #emit: Emit | null = null;
  #ended = false;
  #onEnd: (() => void) | null = null;

  readonly listener: JobListener = (event) => {
    if (this.#emit) this.#emit(event);
    else this.#buffer.push(event);
    if (event.type === 'end') {
      this.#ended = true;
      this.#onEnd?.();
    }
  };

  /** Streams until the job ends or the client leaves. */
  pipe(emit: Emit, signal: AbortSignal): Promise<void> {
    for (const e of this.#buffer.splice(0)) emit(e);
    this.#emit = emit;
    if (this.#ended || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#onEnd = resolve;
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }
}
