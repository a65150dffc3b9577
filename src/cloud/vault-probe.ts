// Checks that a vault is reachable and accepts its credentials: what `strata register` and the
// connectivity monitor ask before trusting a vault.
import { RestError } from '@azure/storage-blob';
import type { TokenCredential } from '@azure/identity';
import { systemClock, type Clock } from '../clock.js';
import { StrataError, errorMessage, throwIfAborted } from '../errors.js';
import { containerClientFromVault, RequestGuard, type ContainerClientOptions } from './azure-store.js';
import type { VaultCredentials } from './vault-credentials.js';

export interface ProbeResult {
  ok: true;
  /** When the vault answered (the clock's time): the "last contact" of connectivity. */
  at: number;
  /** True when this probe created the container. */
  createdContainer: boolean;
}

export interface ProbeOptions {
  signal?: AbortSignal;
  /** The whole probe's time limit. Default 15 s. */
  timeoutMs?: number;
  clock?: Clock;
  credential?: TokenCredential;
  proxy?: ContainerClientOptions['proxy'];
  env?: NodeJS.ProcessEnv;
}

/**
 * Creates the vault's container if it does not exist, then makes a cheap authenticated call (a
 * one-item listing). Idempotent. Resolves `{ ok: true, at }` or rejects with StrataError:
 * - STRATA_VAULT_UNREACHABLE (kind 'failed'): connection refused or reset, DNS failure, TLS failure,
 *   or no answer within `timeoutMs`; the message names the endpoint and says to check network and proxy;
 * - STRATA_VAULT_AUTH (kind 'input'): the key, SAS or token was refused (or no token could be had);
 * - STRATA_VAULT_ERROR (kind 'failed'): any other answer from the service.
 * With a SAS that may not create containers, a refused create is tolerated when the listing succeeds.
 * An aborted `signal` rejects with its reason.
 */
export async function probeVault(creds: VaultCredentials, options: ProbeOptions = {}): Promise<ProbeResult> {
  throwIfAborted(options.signal);
  const clock = options.clock ?? systemClock;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const clientOptions: Parameters<typeof containerClientFromVault>[1] = {};
  if (options.credential) clientOptions.credential = options.credential;
  if (options.proxy) clientOptions.proxy = options.proxy;
  if (options.env) clientOptions.env = options.env;
  const container = await containerClientFromVault(creds, clientOptions);
  const guard = new RequestGuard(clock, options.signal, timeoutMs, 1);
  try {
    let createdContainer = false;
    try {
      createdContainer = (await container.createIfNotExists({ abortSignal: guard.signal })).succeeded;
    } catch (err) {
      const refused = err instanceof RestError && err.statusCode === 403;
      if (!(refused && creds.auth.type === 'Sas')) throw err;
    }
    await container.listBlobsFlat({ abortSignal: guard.signal }).byPage({ maxPageSize: 1 }).next();
    return { ok: true, at: clock.now(), createdContainer };
  } catch (err) {
    throwIfAborted(options.signal);
    throw probeError(err, creds, guard.timedOut, timeoutMs);
  } finally {
    guard.dispose();
  }
}

function probeError(err: unknown, creds: VaultCredentials, timedOut: boolean, timeoutMs: number): StrataError {
  const endpoint = creds.blobEndpoint;
  if (timedOut) {
    return new StrataError('STRATA_VAULT_UNREACHABLE', `the vault at ${endpoint} did not answer within ${timeoutMs / 1000} s; check the network and proxy settings`, {
      kind: 'failed',
      cause: err,
    });
  }
  const name = (err as { name?: string } | null)?.name;
  if (name === 'CredentialUnavailableError' || name === 'AuthenticationError' || name === 'AggregateAuthenticationError') {
    return new StrataError('STRATA_VAULT_AUTH', `no Entra token for the vault at ${endpoint} (${firstLine(errorMessage(err))}); set AZURE_CLIENT_SECRET or sign in`, {
      kind: 'input',
      cause: err,
    });
  }
  if (err instanceof RestError && err.statusCode !== undefined) {
    const code = (err.details as { errorCode?: string } | undefined)?.errorCode ?? err.code ?? '';
    if (err.statusCode === 401 || err.statusCode === 403) {
      return new StrataError(
        'STRATA_VAULT_AUTH',
        `the vault at ${endpoint} refused the credentials (HTTP ${err.statusCode} ${code}); check the account key or SAS, or download new vault credentials`,
        { kind: 'input', cause: err },
      );
    }
    return new StrataError('STRATA_VAULT_ERROR', `the vault at ${endpoint} answered HTTP ${err.statusCode} ${code}`.trim(), { kind: 'failed', cause: err });
  }
  const detail = (err as { code?: unknown } | null)?.code;
  return new StrataError(
    'STRATA_VAULT_UNREACHABLE',
    `cannot reach the vault at ${endpoint} (${typeof detail === 'string' ? detail : firstLine(errorMessage(err))}); check the network and proxy settings`,
    { kind: 'failed', cause: err },
  );
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.slice(0, 200);
}
