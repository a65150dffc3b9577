// Typed errors with stable codes. Each layer adds short context; only the CLI maps them to exit codes.

/** What kind of failure an error is, which decides the CLI's exit code. */
export type ErrorKind =
  | 'usage' // bad flags, bad input, bad config: exit 2
  | 'input' // bad data the user pointed at (pool, passphrase, credentials): exit 2
  | 'gate' // refused by the gating table: exit 3
  | 'failed'; // a job that ran and failed: exit 1

/**
 * An error meant for the user: `message` is one line saying what is wrong and how to fix it,
 * `code` is stable across releases (documented in the README), `cause` carries detail for the log.
 */
export class StrataError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  constructor(code: string, message: string, options: { kind?: ErrorKind; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StrataError';
    this.code = code;
    this.kind = options.kind ?? 'input';
  }
}

/** An object (pack, key, manifest, blob) that does not exist. Object stores throw this and only this for "missing". */
export class NotFoundError extends StrataError {
  readonly key: string;
  constructor(key: string, options: { cause?: unknown } = {}) {
    super('STRATA_NOT_FOUND', `not found: ${key}`, { kind: 'input', ...options });
    this.name = 'NotFoundError';
    this.key = key;
  }
}

/** Data that failed authentication or parsing: a damaged or forged object. */
export class IntegrityError extends StrataError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('STRATA_INTEGRITY', message, { kind: 'input', ...options });
    this.name = 'IntegrityError';
  }
}

export function isNotFound(err: unknown): boolean {
  if (err instanceof NotFoundError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOENT';
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Throws the signal's reason if it is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason ?? new StrataError('STRATA_ABORTED', 'operation aborted', { kind: 'failed' });
}

/**
 * The user's view of any error: a StrataError as it is; a system error mapped to a stable code with a
 * line that says what to do (a full disk, a refused permission, a full catalog).
 */
export function toStrataError(err: unknown, where?: string): StrataError {
  if (err instanceof StrataError) return err;
  const e = err as NodeJS.ErrnoException & { code?: string };
  const at = where ? ` (${where})` : e.path ? ` (${e.path})` : '';
  switch (e.code) {
    case 'ENOSPC':
    case 'EDQUOT':
    case 'SQLITE_FULL':
      return new StrataError('STRATA_DISK_FULL', `no space left on the disk${at}: free space there, then run the job again; nothing already protected was changed`, { kind: 'failed', cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new StrataError('STRATA_PERMISSION', `permission denied${at}: ${e.message}`, { kind: 'failed', cause: err });
    case 'SQLITE_CORRUPT':
    case 'SQLITE_NOTADB':
      return new StrataError('STRATA_CATALOG_CORRUPT', `the catalog is damaged${at}; move it aside and run 'strata catalog rebuild'`, { kind: 'failed', cause: err });
    default:
      return new StrataError('STRATA_INTERNAL', `${e.message ?? String(err)}${at}`, { kind: 'failed', cause: err });
  }
}
