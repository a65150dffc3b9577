// The object store over an Azure Blob container (the vault): block blobs under a per-server key prefix.
//
// Retries: the SDK's own retry policy is switched off (`maxTries: 1`, and no in-stream download
// retries). Retrying is RetryStore's job: one place decides what is transient, backs off on the
// injected Clock, honours the caller's signal and counts what it retried so replication can report
// it. Two nested retry layers would multiply attempts (4 SDK tries × N of ours), sleep on real
// timers invisible to tests, and hide retries from the counters.
//
// Integrity: every put carries an MD5 the service checks (Content-MD5 of the whole blob for a single
// Put Blob, of each block for Put Block) and the whole-blob MD5 is stored as the blob's Content-MD5, so
// a full get is checked against it; a range of up to 4 MiB is checked with a transactional range MD5.
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AnonymousCredential,
  ContainerClient,
  RestError,
  StorageSharedKeyCredential,
  type BlockBlobClient,
  type BlockBlobUploadOptions,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import type { TokenCredential } from '@azure/identity';
import { systemClock, type Clock } from '../clock.js';
import { NotFoundError, StrataError, errorMessage, throwIfAborted } from '../errors.js';
import { assertValidKey, type ByteRange, type ObjectInfo, type ObjectStore, type StoreOptions } from '../store/object-store.js';
import type { VaultCredentials } from './vault-credentials.js';

const MiB = 1024 * 1024;
/** Put Blob's limit for one request (service versions 2016-05-31 and later accept 256 MiB). */
export const AZURE_SINGLE_PUT_LIMIT = 256 * MiB;
/** A block blob has at most 50,000 committed blocks. */
const MAX_BLOCKS = 50_000;
/** The service computes a transactional MD5 for ranges up to 4 MiB only. */
const RANGE_MD5_LIMIT = 4 * MiB;
/** Operations for which a missing container is an error of its own rather than a missing object. */
const CONTAINER_OPS = new Set(['put', 'put block', 'commit', 'list', 'delete']);

export type AzureAuth =
  | { type: 'AccountKey'; accountName: string; accountKey: string }
  /** A SAS token, with or without the leading `?`. */
  | { type: 'Sas'; sasToken: string }
  /** Microsoft Entra ID (only over https). */
  | { type: 'Token'; credential: TokenCredential };

export interface ContainerClientOptions {
  /** The blob service URL (`https://<account>.blob.core.windows.net`, or `http://127.0.0.1:PORT/devstoreaccount1`). */
  endpoint: string;
  container: string;
  auth: AzureAuth;
  /** An explicit proxy; without one the SDK honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY. */
  proxy?: { host: string; port: number; username?: string; password?: string };
}

/** A ContainerClient with the SDK's retries off (see the file comment). Makes no request. */
export function createContainerClient(options: ContainerClientOptions): ContainerClient {
  const base = options.endpoint.replace(/\/+$/, '');
  const url = `${base}/${encodeURIComponent(options.container)}`;
  const pipeline: StoragePipelineOptions = { retryOptions: { maxTries: 1 } };
  if (options.proxy) pipeline.proxyOptions = options.proxy;
  switch (options.auth.type) {
    case 'AccountKey':
      return new ContainerClient(url, new StorageSharedKeyCredential(options.auth.accountName, options.auth.accountKey), pipeline);
    case 'Sas':
      return new ContainerClient(`${url}?${options.auth.sasToken.replace(/^\?/, '')}`, new AnonymousCredential(), pipeline);
    case 'Token':
      return new ContainerClient(url, options.auth.credential, pipeline);
  }
}

/**
 * The SDK credential for vault credentials. For Entra the service principal's secret is not in the
 * file: it comes from AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH, and failing both from
 * DefaultAzureCredential (managed identity, Azure CLI login, …) for the file's tenant.
 */
export async function azureAuthFromVault(creds: VaultCredentials, options: { env?: NodeJS.ProcessEnv; credential?: TokenCredential } = {}): Promise<AzureAuth> {
  const auth = creds.auth;
  if (auth.type === 'AccountKey') return { type: 'AccountKey', accountName: auth.accountName, accountKey: auth.accountKey };
  if (auth.type === 'Sas') return { type: 'Sas', sasToken: auth.sasToken };
  if (options.credential) return { type: 'Token', credential: options.credential };
  const env = options.env ?? process.env;
  const identity = await import('@azure/identity');
  const secret = env['AZURE_CLIENT_SECRET'];
  const certificatePath = env['AZURE_CLIENT_CERTIFICATE_PATH'];
  let credential: TokenCredential;
  if (secret) credential = new identity.ClientSecretCredential(auth.tenantId, auth.clientId, secret);
  else if (certificatePath) credential = new identity.ClientCertificateCredential(auth.tenantId, auth.clientId, { certificatePath });
  else credential = new identity.DefaultAzureCredential({ tenantId: auth.tenantId, managedIdentityClientId: auth.clientId });
  return { type: 'Token', credential };
}

export interface AzureBlobStoreOptions {
  /** Keys are stored under this prefix (`servers/<serverId>/`); `list` strips it. Default '' (the container root). */
  prefix?: string;
  /** Objects up to this size go in one Put Blob; larger ones in blocks. Default 256 MiB. */
  singlePutLimit?: number;
  /** Block size for larger objects (raised if needed to stay within 50,000 blocks). Default 8 MiB. */
  blockSize?: number;
  /** Blocks of one put staged at once. Default 4. */
  blockConcurrency?: number;
  /** A request's time limit before its body is counted. Default 60 s. */
  requestTimeoutMs?: number;
  /** The slowest transfer tolerated: each request's limit grows by its bytes at this rate. Default 64 KiB/s. */
  minBytesPerSecond?: number;
  /** Blobs per list request (the service's maximum is 5000). Default 5000. */
  listPageSize?: number;
  /** Times requests (and nothing else). Default the system clock. */
  clock?: Clock;
}

/**
 * An ObjectStore over an Azure Blob container. Contracts are ObjectStore's; in particular a put is a
 * block blob written by one Put Blob or by Put Block + Put Block List, so it is atomic (staged blocks
 * are invisible until committed). Errors:
 * - a missing blob is a NotFoundError from get, stat and getMetadata;
 * - credentials refused (HTTP 401/403) are StrataError STRATA_VAULT_AUTH (kind 'input');
 * - a missing container is STRATA_VAULT_CONTAINER_MISSING (kind 'input') from put, list and delete
 *   (get and stat report the object missing);
 * - a range outside the object is a RangeError;
 * - transient failures are StrataError kind 'failed' with the original as `cause`: STRATA_VAULT_NETWORK
 *   (connection refused or reset, DNS), STRATA_VAULT_TIMEOUT (no answer in time),
 *   STRATA_VAULT_CHECKSUM (bytes that do not match their MD5), STRATA_VAULT_ERROR (other HTTP errors).
 * A caller's aborted signal rejects with the signal's reason.
 */
export class AzureBlobStore implements ObjectStore {
  readonly capabilities = { connections: 8, atomicReplace: true };
  readonly location: string;
  readonly prefix: string;
  readonly #container: ContainerClient;
  readonly #singlePutLimit: number;
  readonly #blockSize: number;
  readonly #blockConcurrency: number;
  readonly #requestTimeoutMs: number;
  readonly #minBytesPerSecond: number;
  readonly #listPageSize: number;
  readonly #clock: Clock;

  constructor(container: ContainerClient, options: AzureBlobStoreOptions = {}) {
    const prefix = options.prefix ?? '';
    if (prefix !== '') {
      if (!prefix.endsWith('/')) throw new Error(`store prefix must end with "/": ${JSON.stringify(prefix)}`);
      assertValidKey(prefix.slice(0, -1));
    }
    this.prefix = prefix;
    this.#container = container;
    this.#singlePutLimit = options.singlePutLimit ?? AZURE_SINGLE_PUT_LIMIT;
    this.#blockSize = options.blockSize ?? 8 * MiB;
    this.#blockConcurrency = Math.max(1, options.blockConcurrency ?? 4);
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
    this.#minBytesPerSecond = options.minBytesPerSecond ?? 64 * 1024;
    this.#listPageSize = Math.min(5000, Math.max(1, options.listPageSize ?? 5000));
    this.#clock = options.clock ?? systemClock;
    const url = new URL(container.url);
    this.location = `${url.origin}${url.pathname}/${prefix}`;
  }

  /** The container's blob client for a store key. */
  #blob(key: string): BlockBlobClient {
    assertValidKey(key);
    return this.#container.getBlockBlobClient(this.prefix + key);
  }

  /** Creates the container if it does not exist (idempotent). */
  async ensureContainer(options?: StoreOptions): Promise<void> {
    await this.#request('create container', '', 0, options, (abortSignal) => this.#container.createIfNotExists({ abortSignal }));
  }

  async put(key: string, data: Uint8Array, options?: StoreOptions): Promise<void> {
    throwIfAborted(options?.signal);
    const blob = this.#blob(key);
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const blobContentMD5 = md5(body);
    const blobHTTPHeaders = { blobContentMD5, blobContentType: 'application/octet-stream' };
    if (body.length <= this.#singlePutLimit) {
      await this.#request('put', key, body.length, options, (abortSignal) => {
        // Content-MD5 (checked in transit) as well as x-ms-blob-content-md5 (stored). The SDK sends
        // `transactionalContentMD5` for Put Blob though BlockBlobUploadOptions does not declare it; the
        // fault-proxy test checks both headers go out.
        const uploadOptions: BlockBlobUploadOptions & { transactionalContentMD5: Uint8Array } = {
          abortSignal,
          blobHTTPHeaders,
          transactionalContentMD5: blobContentMD5,
        };
        return blob.upload(body, body.length, uploadOptions);
      });
      return;
    }
    const blockSize = Math.max(this.#blockSize, Math.ceil(body.length / MAX_BLOCKS));
    const count = Math.ceil(body.length / blockSize);
    // A fresh id prefix per attempt: blocks staged by an earlier, failed attempt are never committed.
    const idPrefix = randomBytes(12).toString('hex');
    const ids = Array.from({ length: count }, (_, i) => Buffer.from(`${idPrefix}-${String(i).padStart(6, '0')}`).toString('base64'));
    const siblings = new AbortController();
    const onAbort = () => siblings.abort(options?.signal?.reason);
    options?.signal?.addEventListener('abort', onAbort, { once: true });
    let next = 0;
    let firstError: unknown;
    const worker = async () => {
      while (next < count && firstError === undefined) {
        const i = next++;
        const chunk = body.subarray(i * blockSize, Math.min(body.length, (i + 1) * blockSize));
        try {
          await this.#request('put block', key, chunk.length, { signal: siblings.signal }, (abortSignal) =>
            blob.stageBlock(ids[i]!, chunk, chunk.length, { abortSignal, transactionalContentMD5: md5(chunk) }),
          );
        } catch (err) {
          if (firstError === undefined) {
            firstError = err;
            siblings.abort(err);
          }
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(this.#blockConcurrency, count) }, worker));
    } finally {
      options?.signal?.removeEventListener('abort', onAbort);
    }
    throwIfAborted(options?.signal);
    if (firstError !== undefined) throw firstError;
    await this.#request('commit', key, 0, options, (abortSignal) => blob.commitBlockList(ids, { abortSignal, blobHTTPHeaders }));
  }

  async get(key: string, options?: StoreOptions & { range?: ByteRange }): Promise<Buffer> {
    throwIfAborted(options?.signal);
    const blob = this.#blob(key);
    const range = options?.range;
    if (range && (range.offset < 0 || range.length < 0 || !Number.isInteger(range.offset) || !Number.isInteger(range.length))) {
      throw new RangeError(`invalid range ${range.offset}+${range.length} for ${key}`);
    }
    if (range && range.length === 0) {
      // The service reads "count 0" as "to the end": check bounds with a stat instead.
      const { size } = await this.stat(key, options);
      if (range.offset > size) throw new RangeError(`range ${range.offset}+0 outside ${key} (${size} bytes)`);
      return Buffer.alloc(0);
    }
    const rangeMD5 = range !== undefined && range.length <= RANGE_MD5_LIMIT;
    return this.#request('get', key, range?.length ?? 0, options, async (abortSignal, guard) => {
      const res = await blob.download(range?.offset ?? 0, range?.length, { abortSignal, maxRetryRequests: 0, rangeGetContentMD5: rangeMD5 });
      if (!range) guard.extend(res.contentLength ?? 0);
      const body = await readAll(res.readableStreamBody);
      if (range && body.length !== range.length) {
        throw new RangeError(`range ${range.offset}+${range.length} outside ${key} (${sizeFromContentRange(res.contentRange) ?? '?'} bytes)`);
      }
      const expected = !range || rangeMD5 ? res.contentMD5 : undefined;
      if (expected && !md5(body).equals(Buffer.from(expected))) {
        throw new StrataError('STRATA_VAULT_CHECKSUM', `vault object ${this.location}${key} arrived with a wrong MD5 (damaged in transit or at rest)`, { kind: 'failed' });
      }
      return body;
    });
  }

  async stat(key: string, options?: StoreOptions): Promise<ObjectInfo> {
    throwIfAborted(options?.signal);
    const blob = this.#blob(key);
    const props = await this.#request('stat', key, 0, options, (abortSignal) => blob.getProperties({ abortSignal }));
    return { key, size: props.contentLength ?? 0 };
  }

  async *list(prefix: string, options?: StoreOptions): AsyncIterable<ObjectInfo> {
    throwIfAborted(options?.signal);
    // The SDK takes one abort signal for the whole listing; each page request gets its own guard
    // (time limit, caller's signal), which aborts the listing when it fires.
    const listing = new AbortController();
    const pages = this.#container.listBlobsFlat({ prefix: this.prefix + prefix, abortSignal: listing.signal }).byPage({ maxPageSize: this.#listPageSize });
    const iterator = pages[Symbol.asyncIterator]();
    for (;;) {
      const page = await this.#request('list', prefix, 0, options, async (signal) => {
        const forward = () => listing.abort(signal.reason);
        signal.addEventListener('abort', forward, { once: true });
        try {
          return await iterator.next();
        } finally {
          signal.removeEventListener('abort', forward);
        }
      });
      if (page.done) return;
      for (const item of page.value.segment.blobItems) {
        throwIfAborted(options?.signal);
        yield { key: item.name.slice(this.prefix.length), size: item.properties.contentLength ?? 0 };
      }
    }
  }

  async delete(key: string, options?: StoreOptions): Promise<void> {
    throwIfAborted(options?.signal);
    const blob = this.#blob(key);
    await this.#request('delete', key, 0, options, (abortSignal) => blob.deleteIfExists({ abortSignal, deleteSnapshots: 'include' }));
  }

  /**
   * Replaces the blob's metadata with `record` (for the replication layer's soft-delete marks).
   * Names are lower-case identifiers (`[a-z_][a-z0-9_]*`: Azure treats names case-insensitively and
   * the emulator lower-cases them, so only lower case round-trips); values printable ASCII.
   * A later put of the key clears the metadata. A missing blob is a NotFoundError.
   */
  async setMetadata(key: string, record: Record<string, string>, options?: StoreOptions): Promise<void> {
    throwIfAborted(options?.signal);
    for (const [name, value] of Object.entries(record)) {
      if (!/^[a-z_][a-z0-9_]{0,63}$/.test(name)) throw new Error(`invalid metadata name: ${JSON.stringify(name)}`);
      if (!/^[\x20-\x7e]*$/.test(value)) throw new Error(`invalid metadata value for ${name}: only printable ASCII is allowed`);
    }
    const blob = this.#blob(key);
    await this.#request('set metadata', key, 0, options, (abortSignal) => blob.setMetadata(record, { abortSignal }));
  }

  /** The blob's metadata (names in lower case). A missing blob is a NotFoundError. */
  async getMetadata(key: string, options?: StoreOptions): Promise<Record<string, string>> {
    throwIfAborted(options?.signal);
    const blob = this.#blob(key);
    const props = await this.#request('get metadata', key, 0, options, (abortSignal) => blob.getProperties({ abortSignal }));
    return Object.fromEntries(Object.entries(props.metadata ?? {}).map(([name, value]) => [name.toLowerCase(), value]));
  }

  /**
   * Runs one service request under the caller's signal and a time limit that grows with `bytes`,
   * and maps what it throws (see the class comment).
   */
  async #request<T>(op: string, key: string, bytes: number, options: StoreOptions | undefined, fn: (signal: AbortSignal, guard: RequestGuard) => Promise<T>): Promise<T> {
    throwIfAborted(options?.signal);
    const guard = new RequestGuard(this.#clock, options?.signal, this.#requestTimeoutMs, this.#minBytesPerSecond);
    guard.extend(bytes);
    try {
      return await fn(guard.signal, guard);
    } catch (err) {
      throwIfAborted(options?.signal);
      throw this.#mapError(err, op, key, guard);
    } finally {
      guard.dispose();
    }
  }

  #mapError(err: unknown, op: string, key: string, guard: RequestGuard): unknown {
    if (err instanceof RangeError || err instanceof StrataError) return err;
    const where = `${op} ${this.location}${key}`;
    if (guard.timedOut) {
      return new StrataError('STRATA_VAULT_TIMEOUT', `vault did not answer within ${Math.round(guard.limitMs / 1000)} s (${where})`, { kind: 'failed', cause: err });
    }
    if (err instanceof RestError && err.statusCode !== undefined) {
      const status = err.statusCode;
      const code = serviceErrorCode(err);
      if (status === 404) {
        if (code === 'ContainerNotFound' && CONTAINER_OPS.has(op)) {
          return new StrataError('STRATA_VAULT_CONTAINER_MISSING', `vault container ${this.#container.containerName} does not exist at ${this.location}; register the server again to create it`, {
            kind: 'input',
            cause: err,
          });
        }
        return new NotFoundError(key, { cause: err });
      }
      if (status === 401 || status === 403) {
        return new StrataError('STRATA_VAULT_AUTH', `the vault refused the credentials (HTTP ${status}${code ? ` ${code}` : ''}, ${where}); check the account key or SAS, or download new vault credentials`, {
          kind: 'input',
          cause: err,
        });
      }
      if (status === 416) return new RangeError(`range outside ${key} (${where})`);
      return new StrataError('STRATA_VAULT_ERROR', `vault request failed: HTTP ${status}${code ? ` ${code}` : ''} (${where})`, { kind: 'failed', cause: err });
    }
    return new StrataError('STRATA_VAULT_NETWORK', `network error talking to the vault: ${firstLine(errorMessage(err))} (${where})`, { kind: 'failed', cause: err });
  }
}

export interface VaultStoreOptions extends AzureBlobStoreOptions {
  /** A token credential to use for Entra instead of the environment's. */
  credential?: TokenCredential;
  proxy?: ContainerClientOptions['proxy'];
  env?: NodeJS.ProcessEnv;
}

/** The vault named by parsed vault credentials, as an AzureBlobStore. Makes no request. */
export async function azureStoreFromVault(creds: VaultCredentials, options: VaultStoreOptions = {}): Promise<AzureBlobStore> {
  const container = await containerClientFromVault(creds, options);
  return new AzureBlobStore(container, options);
}

/** The vault's ContainerClient (SDK retries off). Makes no request. */
export async function containerClientFromVault(
  creds: VaultCredentials,
  options: { credential?: TokenCredential; proxy?: ContainerClientOptions['proxy']; env?: NodeJS.ProcessEnv } = {},
): Promise<ContainerClient> {
  const auth = await azureAuthFromVault(creds, options);
  const clientOptions: ContainerClientOptions = { endpoint: creds.blobEndpoint, container: creds.containerName, auth };
  if (options.proxy) clientOptions.proxy = options.proxy;
  return createContainerClient(clientOptions);
}

/**
 * One request's cancellation: aborts when the caller's signal does, or when the time limit
 * (`baseMs` plus the bytes announced through `extend` at `minBytesPerSecond`) passes on the clock.
 */
export class RequestGuard {
  readonly #controller = new AbortController();
  readonly #clock: Clock;
  readonly #caller: AbortSignal | undefined;
  readonly #onCallerAbort: () => void;
  readonly #minBytesPerSecond: number;
  #timer: AbortController | undefined;
  #limitMs: number;
  #timedOut = false;

  constructor(clock: Clock, caller: AbortSignal | undefined, baseMs: number, minBytesPerSecond: number) {
    this.#clock = clock;
    this.#caller = caller;
    this.#limitMs = baseMs;
    this.#minBytesPerSecond = minBytesPerSecond;
    this.#onCallerAbort = () => this.#controller.abort(caller?.reason);
    caller?.addEventListener('abort', this.#onCallerAbort, { once: true });
    this.#arm();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get timedOut(): boolean {
    return this.#timedOut;
  }

  get limitMs(): number {
    return this.#limitMs;
  }

  /** Gives the request more time for `bytes` more to transfer (restarting the timer from now). */
  extend(bytes: number): void {
    if (bytes <= 0) return;
    this.#limitMs += Math.ceil((bytes * 1000) / this.#minBytesPerSecond);
    this.#arm();
  }

  dispose(): void {
    this.#timer?.abort();
    this.#caller?.removeEventListener('abort', this.#onCallerAbort);
  }

  #arm(): void {
    this.#timer?.abort();
    const timer = new AbortController();
    this.#timer = timer;
    this.#clock.sleep(this.#limitMs, timer.signal).then(
      () => {
        this.#timedOut = true;
        this.#controller.abort(new Error(`request timed out after ${this.#limitMs} ms`));
      },
      () => {},
    );
  }
}

function md5(data: Uint8Array): Buffer {
  return createHash('md5').update(data).digest();
}

/** Reads a response body whole. A body that breaks off rejects (it never resolves short). */
async function readAll(stream: NodeJS.ReadableStream | undefined): Promise<Buffer> {
  if (!stream) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of stream as Readable) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks);
}

function sizeFromContentRange(contentRange: string | undefined): number | undefined {
  const total = contentRange?.split('/')[1];
  return total && /^\d+$/.test(total) ? Number(total) : undefined;
}

/** The service's error code (`BlobNotFound`, `AuthenticationFailed`…), also for HEAD requests whose body is empty. */
function serviceErrorCode(err: RestError): string | undefined {
  const details = err.details as { errorCode?: string } | undefined;
  return details?.errorCode ?? (typeof err.code === 'string' ? err.code : undefined);
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.slice(0, 200);
}
