// Azurite (the Azure Storage emulator) as a child process on loopback: the test harness's vault and
// the daemon's embedded demo vault.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { systemClock, type Clock } from '../clock.js';
import { StrataError, throwIfAborted } from '../errors.js';

/** The emulator's well-known development account (public, documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT_NAME = 'devstoreaccount1';
/** The emulator's well-known development account key (public, documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteProcess {
  /** The blob endpoint, `http://127.0.0.1:PORT/devstoreaccount1`. */
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
  /** The workspace directory Azurite keeps its data in. */
  readonly location: string;
  /**
   * Stops the process (SIGTERM, then SIGKILL after `killAfterMs`) and waits for it to exit; removes
   * the workspace if it was a temporary one. Idempotent: later calls return the first call's promise.
   */
  stop(): Promise<void>;
}

export interface StartAzuriteOptions {
  /** Listening address; loopback by default (the emulator has no real authentication). */
  host?: string;
  /** A fixed port; by default Azurite binds a free one and reports it. */
  port?: number;
  /** A workspace to keep (the demo vault). By default a temporary directory, removed on stop. */
  location?: string;
  /** How long to wait for the emulator to answer. Default 30 s. */
  startTimeoutMs?: number;
  /** Grace between SIGTERM and SIGKILL on stop. Default 3 s. */
  killAfterMs?: number;
  clock?: Clock;
  signal?: AbortSignal;
}

const requireFromHere = createRequire(import.meta.url);

/** The path of the `azurite-blob` script, found through the installed package's `bin` entry. */
export function azuriteBlobScript(): string {
  const packageJson = requireFromHere.resolve('azurite/package.json');
  const pkg = JSON.parse(readFileSync(packageJson, 'utf8')) as { bin?: Record<string, string> };
  const bin = pkg.bin?.['azurite-blob'];
  if (!bin) throw new StrataError('STRATA_AZURITE_MISSING', 'the azurite package has no azurite-blob binary; reinstall dependencies', { kind: 'failed' });
  return path.join(path.dirname(packageJson), bin);
}

/**
 * Starts `azurite-blob` on loopback and resolves once it listens and answers HTTP requests.
 * Without a fixed `port`, Azurite binds port 0 itself and we read the port it reports, so there is no
 * window in which another process can take a port we picked.
 * Rejects (and leaves nothing running) if it exits or does not answer within `startTimeoutMs`.
 * The child is killed if this process exits without calling `stop`.
 */
export async function startAzuriteProcess(options: StartAzuriteOptions = {}): Promise<AzuriteProcess> {
  throwIfAborted(options.signal);
  const clock = options.clock ?? systemClock;
  const host = options.host ?? '127.0.0.1';
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const ownLocation = options.location === undefined;
  const location = options.location ?? (await mkdtemp(path.join(tmpdir(), 'strata-azurite-')));
  const args = [
    azuriteBlobScript(),
    '--blobHost', host,
    '--blobPort', String(options.port ?? 0),
    '--location', location,
    '--skipApiVersionCheck',
    '--disableTelemetry',
    '--silent',
    '--loose',
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let onOutput = () => {};
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
    onOutput();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killOnExit = () => {
    child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await terminate(child, exited, clock, options.killAfterMs ?? 3000);
      process.off('exit', killOnExit);
      if (ownLocation) await rm(location, { recursive: true, force: true });
    })();
    return stopping;
  };

  const lastLine = () => output.trim().split('\n').pop() ?? '';
  const listening = new Promise<number>((resolve) => {
    onOutput = () => {
      const match = /listens on https?:\/\/[^\s]*:(\d+)/.exec(output);
      if (match) resolve(Number(match[1]));
    };
  });
  const failed = new Promise<never>((_, reject) => {
    child.once('error', reject);
    exited.then(() =>
      reject(new StrataError('STRATA_AZURITE_START', `azurite exited during start: ${lastLine()}`, { kind: 'failed' })),
    );
  });
  failed.catch(() => {});
  const gaveUp = new AbortController();
  const timedOut = clock.sleep(timeoutMs, gaveUp.signal).then(() => {
    throw new StrataError('STRATA_AZURITE_START', `azurite did not start within ${timeoutMs} ms: ${lastLine()}`, { kind: 'failed' });
  });
  timedOut.catch(() => {});
  const signal = AbortSignal.any(options.signal ? [gaveUp.signal, options.signal] : [gaveUp.signal]);
  const aborted = new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(options.signal?.reason), { once: true }));
  aborted.catch(() => {});
  try {
    const port = await Promise.race([listening, failed, timedOut, aborted]);
    const answering = waitUntilAnswering(host, port, clock, signal);
    answering.catch(() => {});
    await Promise.race([answering, failed, timedOut, aborted]);
    const hostInUrl = host.includes(':') ? `[${host}]` : host;
    return { endpoint: `http://${hostInUrl}:${port}/${AZURITE_ACCOUNT_NAME}`, port, pid: child.pid!, location, stop };
  } catch (err) {
    await stop();
    throw err;
  } finally {
    gaveUp.abort();
  }
}

async function terminate(child: ChildProcess, exited: Promise<void>, clock: Clock, killAfterMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const grace = new AbortController();
  const timedOut = await Promise.race([
    exited.then(() => false),
    clock.sleep(killAfterMs, grace.signal).then(() => true, () => false),
  ]);
  grace.abort();
  if (timedOut) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Polls until any HTTP answer comes back (Azurite answers an unsigned request with 4xx, which is enough). */
async function waitUntilAnswering(host: string, port: number, clock: Clock, signal?: AbortSignal): Promise<void> {
  for (;;) {
    if (signal?.aborted) throw signal.reason;
    try {
      return await httpPing(host, port);
    } catch {
      await clock.sleep(50, signal);
    }
  }
}

function httpPing(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: `/${AZURITE_ACCOUNT_NAME}?comp=list`, agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve());
      res.once('error', reject);
    });
    req.setTimeout(1000, () => req.destroy(new Error('no answer within 1 s')));
    req.once('error', reject);
  });
}
