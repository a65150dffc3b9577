import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertLoopbackListen, cookieName, csrfToken, hostHeaderAllowed, isLoopbackHost, newToken, parseCookies, presentedToken, sameSecret, writeTokenFile } from './auth.js';

describe('console access', () => {
  it('accepts only loopback listen addresses', () => {
    expect(assertLoopbackListen('127.0.0.1:8470')).toEqual({ host: '127.0.0.1', port: 8470 });
    expect(assertLoopbackListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(assertLoopbackListen('localhost:9000')).toEqual({ host: 'localhost', port: 9000 });
    expect(assertLoopbackListen('127.1.2.3:1')).toEqual({ host: '127.1.2.3', port: 1 });
    for (const bad of ['0.0.0.0:8470', '[::]:8470', '10.0.0.1:80', 'example.com:80', '[::ffff:10.0.0.1]:1']) {
      expect(() => assertLoopbackListen(bad), bad).toThrow(/STRATA_CONSOLE_LISTEN|not a loopback address/);
    }
    expect(() => assertLoopbackListen('127.0.0.1')).toThrow(/must be "host:port"/);
    expect(isLoopbackHost('::ffff:127.0.0.1')).toBe(true);
  });

  it('answers only to a loopback Host header (no DNS rebinding)', () => {
    for (const ok of ['127.0.0.1:8470', 'localhost:8470', '[::1]:8470', 'localhost', 'LOCALHOST:1']) expect(hostHeaderAllowed(ok), ok).toBe(true);
    for (const no of [undefined, '', 'evil.example', 'evil.example:8470', '127.0.0.1.evil.example', '0.0.0.0:8470', '[::]:1']) expect(hostHeaderAllowed(no), String(no)).toBe(false);
  });

  it('reads the token from a bearer header, X-Strata-Token or this port\'s cookie', () => {
    const t = newToken();
    expect(t).toMatch(/^[0-9a-f]{64}$/);
    expect(newToken()).not.toBe(t);
    expect(presentedToken({ authorization: `Bearer ${t}` }, 1)).toBe(t);
    expect(presentedToken({ 'x-strata-token': t }, 1)).toBe(t);
    expect(presentedToken({ cookie: `other=1; ${cookieName(8470)}=${t}` }, 8470)).toBe(t);
    expect(presentedToken({ cookie: `${cookieName(8471)}=${t}` }, 8470)).toBeNull();
    expect(presentedToken({}, 8470)).toBeNull();
    expect(parseCookies('a=1; b = 2;c=3=4; =x; d')).toEqual(new Map([['a', '1'], ['b', '2'], ['c', '3=4']]));
    expect(sameSecret(t, t)).toBe(true);
    expect(sameSecret(t, t.slice(1))).toBe(false);
  });

  it('derives a CSRF token per session that reveals nothing of the session token', () => {
    const a = csrfToken('a'.repeat(64));
    expect(a).toBe(csrfToken('a'.repeat(64)));
    expect(a).not.toBe(csrfToken('b'.repeat(64)));
    expect(a).not.toContain('a'.repeat(8));
  });

  it('writes the token file 0600, replacing the previous one', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'strata-token-'));
    try {
      const file = path.join(dir, 'console.token');
      await writeTokenFile(file, 'one');
      await writeTokenFile(file, 'two');
      expect(await readFile(file, 'utf8')).toBe('two\n');
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
