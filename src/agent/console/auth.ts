// Who may use the console: whoever holds the token the daemon made at start (printed, and written 0600
// to `<stateDir>/console.token`, readable only by the daemon's user). A request carries it once as
// `?token=` (the console then sets a cookie and redirects to the same page without it), or on every
// request as a cookie, `Authorization: Bearer …` or `X-Strata-Token` (scrapers). Forms carry a CSRF
// token derived from the session token. The Host header must name a loopback address (no DNS rebinding).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { StrataError } from '../../errors.js';

export function tokenFileOf(stateDir: string): string {
  return path.join(stateDir, 'console.token');
}

/** A new random token (256 bits, hex). */
export function newToken(): string {
  return randomBytes(32).toString('hex');
}

/** Writes the token 0600 (replacing the previous daemon's, atomically), so only the daemon's user reads it. */
export async function writeTokenFile(file: string, token: string): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  const h = await fs.open(tmp, 'wx', 0o600);
  try {
    await h.writeFile(token + '\n');
    await h.sync();
  } finally {
    await h.close();
  }
  await fs.rename(tmp, file);
}

export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The CSRF token of a session: a MAC of a fixed label under the session token (a page can show it; it reveals nothing). */
export function csrfToken(sessionToken: string): string {
  return createHmac('sha256', sessionToken).update('strata console csrf v1').digest('base64url');
}

/** The cookie's name: one per port, so two daemons' consoles on one host do not overwrite each other's. */
export function cookieName(port: number): string {
  return `strata_console_${port}`;
}

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (name && !out.has(name)) out.set(name, value);
  }
  return out;
}

/** The token a request presents (header first, then the cookie), or null. `?token=` is handled by the server (it redirects). */
export function presentedToken(headers: Record<string, string | string[] | undefined>, port: number): string | null {
  const auth = headers['authorization'];
  if (typeof auth === 'string' && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, '').trim();
  const x = headers['x-strata-token'];
  if (typeof x === 'string' && x) return x.trim();
  const cookie = parseCookies(typeof headers['cookie'] === 'string' ? headers['cookie'] : undefined).get(cookieName(port));
  return cookie ?? null;
}

/** Whether an address is a loopback one: 127.0.0.0/8, ::1 (or ::ffff:127.x), or the name "localhost". */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h) || h === '0:0:0:0:0:0:0:1';
  return false;
}

/** Splits "host:port" (an IPv6 host in brackets). */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(listen);
  if (!m || Number(m[2]) > 65535) {
    throw new StrataError('STRATA_CONSOLE_LISTEN', `console.listen "${listen}" must be "host:port" such as "127.0.0.1:8470"`, { kind: 'usage' });
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** Refuses a listen address that is not loopback: the console is for the machine's own admin (an SSH tunnel reaches it from afar). */
export function assertLoopbackListen(listen: string): { host: string; port: number } {
  const parsed = parseListen(listen);
  if (!isLoopbackHost(parsed.host)) {
    throw new StrataError(
      'STRATA_CONSOLE_LISTEN',
      `console.listen "${listen}" is not a loopback address; the console listens on 127.0.0.1, [::1] or localhost only (reach it from another machine through an SSH tunnel: ssh -L 8470:127.0.0.1:8470 server)`,
      { kind: 'usage' },
    );
  }
  return parsed;
}

/** The Host header names a loopback host (any port: a tunnel may forward another one). */
export function hostHeaderAllowed(hostHeader: string | undefined): boolean {
  if (!hostHeader) return false;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/.exec(hostHeader);
  return Boolean(m && isLoopbackHost(m[1]!));
}
