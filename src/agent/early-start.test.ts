import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveSlotKeyAhead, keysDerivingAhead, openKeySlot, parseKeySlot } from '../crypto/keys.js';
import { Pool } from '../replica/pool.js';
import { DirStore } from '../store/dir-store.js';
import { closeEarly, startEarly } from './early-start.js';

const PASSPHRASE = 'correct horse battery staple 42';
const FAST = { N: 2 ** 10, r: 8, p: 1 };
let dir: string;
let config: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'strata-early-'));
  await Pool.init(new DirStore(path.join(dir, 'pool')), PASSPHRASE, { now: Date.now(), scrypt: FAST });
  await writeFile(path.join(dir, 'passphrase'), PASSPHRASE + '\n', { mode: 0o600 });
  await mkdir(path.join(dir, 'state'));
  config = path.join(dir, 'strata.json');
  // Relative paths, as a config may have them: resolved against the config's directory.
  await writeFile(config, JSON.stringify({ stateDir: 'state', pool: 'pool', scratch: 'scratch', passphraseFile: './passphrase' }));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Opens the pool as the command would: takes the derivation started ahead, if it fits. */
const openPool = () => Pool.open(new DirStore(path.join(dir, 'pool')), PASSPHRASE);

describe('what the CLI starts before loading a command', () => {
  it('starts a lister for a backup that lists a tree, and closes it when nothing took it', async () => {
    for (const argv of [['backup'], ['backup', 'web'], ['backup', '--path', '/srv', '--to', 'both'], ['backup', '--to=disk']]) {
      const early = startEarly(argv, {});
      expect(early.lister?.available, argv.join(' ')).toBe(true);
      await closeEarly(early);
      expect(early.lister!.available).toBe(false);
    }
  });

  it('starts no thread for other commands, help, or a backup to the cloud only', async () => {
    for (const argv of [[], ['restore', 'x'], ['check'], ['backup', '--help'], ['backup', '-h'], ['backup', '--to', 'cloud'], ['backup', 'web', '--to=cloud']]) {
      expect(startEarly(argv, {}), argv.join(' ')).toEqual({});
    }
    await closeEarly({});
  });

  it('derives the pool key ahead for a backup, restore or check, and opening the pool takes it', async () => {
    const cases = [
      ['check', '--read-data', '--config', config],
      ['restore', 'latest', '--target', '/tmp/x', `--config=${config}`],
      ['backup', '--path', dir, '--config', config],
    ];
    for (const argv of cases) {
      const early = startEarly(argv, {});
      expect(keysDerivingAhead(), argv.join(' ')).toBe(1);
      const pool = await openPool();
      expect(pool.keys.encKey.length).toBe(32);
      expect(keysDerivingAhead(), 'taken by Pool.open').toBe(0);
      await closeEarly(early);
    }
    // The config from $STRATA_CONFIG, as the command finds it.
    startEarly(['check'], { STRATA_CONFIG: config });
    expect(keysDerivingAhead()).toBe(1);
    await openPool();
    expect(keysDerivingAhead()).toBe(0);
  });

  it('derives nothing ahead where the guess could be wrong or the job runs elsewhere, and never throws', async () => {
    const none = async (argv: string[], env: NodeJS.ProcessEnv = {}) => {
      const early = startEarly(argv, env);
      expect(keysDerivingAhead(), argv.join(' ')).toBe(0);
      await closeEarly(early);
    };
    await none(['backup', '--to', 'cloud', '--config', config]);
    await none(['restore', 'latest', '--from', 'cloud', '--config', config]);
    await none(['restore', '--help', '--config', config]);
    await none(['status', '--config', config]);
    await none(['check', '--config', path.join(dir, 'missing.json')]);
    await none(['check'], { STRATA_CONFIG: path.join(dir, 'passphrase') }); // not JSON
    // A config or passphrase file that is a pipe is left unread for the command (a read would block here
    // with no writer, and take what the command must read).
    const fifo = path.join(dir, 'config.fifo');
    execFileSync('mkfifo', [fifo]);
    try {
      await none(['check', '--config', fifo]);
      await writeFile(path.join(dir, 'fifo-secret.json'), JSON.stringify({ stateDir: 'state', pool: 'pool', scratch: 'scratch', passphraseFile: 'config.fifo' }));
      await none(['check', '--config', path.join(dir, 'fifo-secret.json')]);
    } finally {
      await rm(fifo);
    }
    // A daemon's control socket: a backup or restore goes to the daemon (a check never does).
    const socket = path.join(dir, 'state', 'strata.sock');
    await writeFile(socket, '');
    try {
      await none(['backup', '--config', config]);
      await none(['restore', 'latest', '--config', config]);
      startEarly(['check', '--config', config], {});
      startEarly(['backup', '--config', config], { STRATA_NO_DAEMON: '1' }).lister?.close();
      expect(keysDerivingAhead()).toBe(1); // the same derivation, started once
      await openPool();
    } finally {
      await rm(socket);
    }
    // Two key slots: the pool tries them in turn, so no guess.
    const pool = await openPool();
    const second = await pool.addKeySlot('another passphrase of 16+', Date.now(), FAST);
    try {
      await none(['check', '--config', config]);
    } finally {
      await pool.removeKeySlot(second);
    }
  });

  it('a derivation started with another passphrase is not used for this one', async () => {
    const store = new DirStore(path.join(dir, 'pool'));
    const [slotId] = await (await openPool()).listKeySlots();
    const slot = parseKeySlot(await store.get(`keys/${slotId}`), slotId!);
    deriveSlotKeyAhead(slot, 'not the passphrase at all');
    expect(await openKeySlot(slot, PASSPHRASE)).not.toBeNull();
    expect(keysDerivingAhead()).toBe(1);
    expect(await openKeySlot(slot, 'not the passphrase at all')).toBeNull();
    expect(keysDerivingAhead()).toBe(0);
  });
});
