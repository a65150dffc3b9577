import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { azuriteBlobScript, startAzuriteProcess } from './azurite-process.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('azurite process', () => {
  it('finds the azurite-blob script through the package', () => {
    expect(azuriteBlobScript()).toMatch(/azurite[/\\].*blob[/\\]main\.js$/);
  });

  it('starts two instances on distinct free ports, answers, and stops cleanly', { timeout: 40_000 }, async () => {
    const [a, b] = await Promise.all([startAzuriteProcess(), startAzuriteProcess()]);
    try {
      expect(a.port).not.toBe(b.port);
      expect(a.endpoint).toBe(`http://127.0.0.1:${a.port}/devstoreaccount1`);
      const res = await fetch(`${a.endpoint}?comp=list`);
      expect(res.status).toBeGreaterThanOrEqual(200);
      expect(existsSync(a.location)).toBe(true);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
    expect(alive(a.pid)).toBe(false);
    expect(alive(b.pid)).toBe(false);
    expect(existsSync(a.location)).toBe(false);
    await a.stop(); // idempotent
  });

  it('fails to start, leaving nothing running, on a port already in use', { timeout: 20_000 }, async () => {
    const a = await startAzuriteProcess();
    try {
      await expect(startAzuriteProcess({ port: a.port, startTimeoutMs: 10_000 })).rejects.toMatchObject({ code: 'STRATA_AZURITE_START' });
    } finally {
      await a.stop();
    }
  });

  it('stops a start that is aborted, leaving nothing running', { timeout: 20_000 }, async () => {
    const controller = new AbortController();
    const starting = startAzuriteProcess({ signal: controller.signal });
    setTimeout(() => controller.abort(new Error('changed my mind')), 50);
    await expect(starting).rejects.toThrow('changed my mind');
  });
});
