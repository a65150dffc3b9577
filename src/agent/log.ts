// Structured logs (pino) to the state directory. User-facing errors are one line; their causes go here.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';

const SECRET_KEYS = ['passphrase', 'password', 'accountKey', 'AccountKey', 'sasToken', 'SasToken', 'encKey', 'idKey', 'chunkerKey', 'key', 'authorization'];

/** A logger writing JSON lines to `<stateDir>/logs/<name>.log` (created 0700), with secrets redacted. */
export function createLogger(stateDir: string | null, name: string): Logger {
  if (!stateDir) return pino({ enabled: false });
  const dir = path.join(stateDir, 'logs');
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    return pino({ enabled: false });
  }
  return pino(
    {
      name,
      base: { pid: process.pid },
      redact: { paths: [...SECRET_KEYS, ...SECRET_KEYS.map((k) => `*.${k}`)], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: path.join(dir, `${name}.log`), sync: true, mkdir: true, mode: 0o600 }),
  );
}

/** The chain of causes of an error, for the log. */
export function errorChain(err: unknown): { message: string; code?: string; stack?: string }[] {
  const out: { message: string; code?: string; stack?: string }[] = [];
  let e: unknown = err;
  for (let i = 0; e && i < 8; i++) {
    const x = e as { message?: string; code?: string; stack?: string; cause?: unknown };
    out.push({ message: String(x.message ?? e), ...(x.code ? { code: String(x.code) } : {}), ...(x.stack ? { stack: x.stack } : {}) });
    e = x.cause;
  }
  return out;
}
