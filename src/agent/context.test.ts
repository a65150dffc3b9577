import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StrataConfig } from '../config/types.js';
import { AgentContext } from './context.js';

let dir: string;
let ctx: AgentContext;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'strata-context-'));
  for (const d of ['plain', 'hooked']) mkdirSync(path.join(dir, d));
  const config: StrataConfig = {
    stateDir: path.join(dir, 'state'),
    pool: path.join(dir, 'pool'),
    scratch: path.join(dir, 'scratch'),
    passphraseFile: path.join(dir, 'pass'),
    protectionGroups: [
      { name: 'plain', sources: [{ path: path.join(dir, 'plain'), exclude: ['*.tmp'] }], disk: { syncFrequency: '0 * * * *', retentionDays: 3 } },
      { name: 'hooked', sources: [{ path: path.join(dir, 'hooked'), pre: 'true' }], disk: { syncFrequency: '0 * * * *', retentionDays: 3 } },
      { name: 'db', sources: [{ path: path.join(dir, 'x.db'), type: 'sqlite' }], disk: { syncFrequency: '0 * * * *', retentionDays: 3 } },
    ],
    subscription: { provider: 'static', state: 'active' },
  };
  ctx = new AgentContext(config);
});
afterEach(() => {
  ctx.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a backup’s tree walk started early', () => {
  it('is handed to the backup of the same tree with the same exclusions, and to no other', async () => {
    ctx.prefetchBackupWalk({ group: 'plain' });
    expect(ctx.takeEarlyWalk(path.join(dir, 'plain'), [])).toBeNull(); // other exclusions: ended, not handed over
    expect(ctx.takeEarlyWalk(path.join(dir, 'plain'), ['*.tmp'])).toBeNull(); // (already gone)

    ctx.prefetchBackupWalk({ group: 'plain' });
    const walk = ctx.takeEarlyWalk(path.join(dir, 'plain'), ['*.tmp']);
    expect(walk).not.toBeNull();
    expect((await (await walk!.feed).next('')).names).toEqual([]);
    await walk!.close();

    ctx.prefetchBackupWalk({ path: path.join(dir, 'plain'), exclude: ['a'] });
    expect(ctx.takeEarlyWalk(path.join(dir, 'plain'), ['a'])).not.toBeNull();
  });

  it('is not started where the tree may change before the backup reads it, nor for a request in error', () => {
    for (const request of [{ group: 'hooked' }, { group: 'db' }, { group: 'nope' }, {}, { group: 'plain', path: dir }]) {
      ctx.prefetchBackupWalk(request);
      for (const root of [path.join(dir, 'hooked'), path.join(dir, 'x.db'), path.join(dir, 'plain'), dir]) expect(ctx.takeEarlyWalk(root, [])).toBeNull();
    }
  });
});
