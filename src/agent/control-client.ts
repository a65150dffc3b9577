// The client side of the daemon's control socket (control-server.ts), and `tryDaemon`: the CLI sends a
// backup or restore to the daemon when one runs on the config's state directory, else runs it itself.
import http from 'node:http';
import path from 'node:path';
import type { StrataConfig } from '../config/types.js';
import { StrataError, type ErrorKind } from '../errors.js';
import type { ErrorPayload, JobEvent, JobProgress } from './job-runner.js';
import { daemonBypassed, socketPathOf } from './socket-path.js';

export { daemonBypassed, socketPathOf } from './socket-path.js';

const KINDS: ErrorKind[] = ['usage', 'input', 'gate', 'failed'];

function fromPayload(e: Partial<ErrorPayload> | undefined, fallback: string): StrataError {
  const kind = KINDS.includes(e?.kind as ErrorKind) ? (e!.kind as ErrorKind) : 'failed';
  return new StrataError(e?.code ?? 'STRATA_DAEMON_ERROR', e?.message ?? fallback, { kind });
}

/** Connection failures that mean "no daemon here" (the CLI then runs the job itself). */
const NOT_RUNNING = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK']);

export class ControlClient {
  readonly socketPath: string;
  readonly #timeoutMs: number;

  /** `timeoutMs` bounds connecting and a plain request (not a stream). Default 10 s. */
  constructor(socketPath: string, options: { timeoutMs?: number } = {}) {
    this.socketPath = socketPath;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  static forConfig(config: Pick<StrataConfig, 'stateDir'>): ControlClient {
    return new ControlClient(socketPathOf(config.stateDir));
  }

  /** The error for a failed connection: STRATA_DAEMON_NOT_RUNNING or STRATA_DAEMON_UNREACHABLE. */
  connectionError(err: unknown): StrataError {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'ENOENT') {
      return new StrataError('STRATA_DAEMON_NOT_RUNNING', `the strata daemon is not running (no control socket at ${this.socketPath}); start it with 'strata daemon' or 'systemctl start strata'`, {
        kind: 'failed',
        cause: err,
      });
    }
    if (NOT_RUNNING.has(code)) {
      return new StrataError('STRATA_DAEMON_NOT_RUNNING', `the strata daemon is not running (nothing answers on ${this.socketPath}, left by a daemon that stopped); start it with 'strata daemon'`, {
        kind: 'failed',
        cause: err,
      });
    }
    if (code === 'EACCES' || code === 'EPERM') {
      return new StrataError('STRATA_DAEMON_UNREACHABLE', `permission denied on the control socket ${this.socketPath}: the daemon runs as another user; run strata as that user (sudo -u …)`, {
        kind: 'failed',
        cause: err,
      });
    }
    return new StrataError('STRATA_DAEMON_UNREACHABLE', `cannot reach the strata daemon on ${this.socketPath}: ${(err as Error).message}`, { kind: 'failed', cause: err });
  }

  #open(method: string, urlPath: string, body: unknown, onResponse: (res: http.IncomingMessage) => void, onError: (err: unknown) => void): http.ClientRequest {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        socketPath: this.socketPath,
        agent: false, // one connection per request: nothing pooled outlives a CLI command
        path: urlPath,
        method,
        headers: { accept: 'application/json', ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) },
      },
      onResponse,
    );
    req.setTimeout(this.#timeoutMs, () => req.destroy(Object.assign(new Error(`no answer within ${this.#timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', onError);
    req.end(payload);
    return req;
  }

  /** One request, one JSON answer; an error answer is thrown as the StrataError it stands for. */
  request<T>(method: string, urlPath: string, body?: unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#open(
        method,
        urlPath,
        body,
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(this.connectionError(err)));
          res.on('end', () => {
            let json: unknown;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              return reject(new StrataError('STRATA_DAEMON_ERROR', `the daemon answered ${res.statusCode} with something that is not JSON`, { kind: 'failed' }));
            }
            if ((res.statusCode ?? 500) >= 400) return reject(fromPayload((json as { error?: ErrorPayload }).error, `the daemon answered ${res.statusCode}`));
            resolve(json as T);
          });
        },
        (err) => reject(this.connectionError(err)),
      );
    });
  }

  /**
   * A streamed request: each event of the newline-delimited JSON answer goes to `onEvent`, in order.
   * Resolves when the daemon ends the stream; an error answer (before the stream) is thrown.
   */
  stream(method: string, urlPath: string, body: unknown, onEvent: (event: JobEvent | { type: 'error'; error: ErrorPayload }) => void, options: { signal?: AbortSignal } = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const req = this.#open(
        method,
        urlPath,
        body,
        (res) => {
          req.setTimeout(0);
          if ((res.statusCode ?? 500) >= 400) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              let err: ErrorPayload | undefined;
              try {
                err = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: ErrorPayload }).error;
              } catch {
                /* not JSON */
              }
              reject(fromPayload(err, `the daemon answered ${res.statusCode}`));
            });
            return;
          }
          let rest = '';
          res.setEncoding('utf8');
          res.on('data', (text: string) => {
            rest += text;
            let nl: number;
            while ((nl = rest.indexOf('\n')) >= 0) {
              const line = rest.slice(0, nl).trim();
              rest = rest.slice(nl + 1);
              if (!line) continue;
              try {
                onEvent(JSON.parse(line) as JobEvent);
              } catch (err) {
                req.destroy();
                return reject(err);
              }
            }
          });
          res.on('error', (err) => reject(this.connectionError(err)));
          res.on('end', () => resolve());
        },
        (err) => reject(this.connectionError(err)),
      );
      options.signal?.addEventListener('abort', () => req.destroy(), { once: true });
    });
  }

  /** Whether a daemon answers on the socket: false when there is none (no socket, or a stale one). Other failures are thrown. */
  async available(): Promise<boolean> {
    try {
      await this.request('GET', '/status');
      return true;
    } catch (err) {
      if (err instanceof StrataError && err.code === 'STRATA_DAEMON_NOT_RUNNING') return false;
      throw err;
    }
  }

  /**
   * Runs a job request with `follow: true` and returns the job's result, or throws its error as the same
   * StrataError the CLI throws in-process. Progress events go to `onProgress`.
   */
  async runJob<T>(urlPath: string, body: Record<string, unknown>, onProgress?: (p: JobProgress) => void): Promise<T> {
    let end: Extract<JobEvent, { type: 'end' }> | null = null;
    let jobId: number | null = null;
    await this.stream('POST', urlPath, { ...body, follow: true }, (event) => {
      if (event.type === 'started') jobId = event.jobId;
      else if (event.type === 'progress') onProgress?.(event.progress);
      else if (event.type === 'end') end = event;
      else if (event.type === 'error') throw fromPayload(event.error, 'the daemon failed');
    });
    const ended = end as Extract<JobEvent, { type: 'end' }> | null;
    if (!ended) {
      throw new StrataError('STRATA_DAEMON_UNREACHABLE', `the daemon closed the connection before job ${jobId ?? '?'} ended; see 'strata jobs'`, { kind: 'failed' });
    }
    if (ended.error) throw fromPayload(ended.error, `job ${ended.jobId} failed`);
    return ended.result as T;
  }
}

/** What `tryDaemon` needs of the CLI invocation (kept structural: agent does not import cli). */
export interface DaemonCaller {
  context(opts: { config?: string }): { config: Pick<StrataConfig, 'stateDir'> };
}

export type DaemonJobRequest =
  | { backup: { group?: string; path?: string; exclude?: string[]; to?: 'disk' | 'cloud' | 'both' } }
  | { restore: { recoveryPoint: string; target: string; item?: string; group?: string; onConflict?: string } };

/**
 * Sends a backup or restore to the daemon running on the config's state directory and returns its
 * result (identical to the in-process one), with progress to `onProgress`; returns null when no daemon
 * runs (no socket, or a stale one), so the caller runs the job itself. Relative paths are resolved here,
 * against the CLI's working directory. `STRATA_NO_DAEMON=1` forces in-process.
 */
export async function tryDaemon<T>(inv: DaemonCaller, opts: { config?: string }, request: DaemonJobRequest, onProgress?: (p: JobProgress) => void): Promise<T | null> {
  if (daemonBypassed()) return null;
  const client = ControlClient.forConfig(inv.context(opts).config);
  if (!(await client.available())) return null;
  if ('backup' in request) {
    const b = request.backup;
    return client.runJob<T>('/backup', { ...b, ...(b.path !== undefined ? { path: path.resolve(b.path) } : {}) }, onProgress);
  }
  const r = request.restore;
  return client.runJob<T>('/restore', { ...r, target: path.resolve(r.target) }, onProgress);
}
