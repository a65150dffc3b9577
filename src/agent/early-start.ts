// What the CLI starts before it loads a command's modules, so that it runs while they load (~0.2 s)
// instead of after:
// - for a backup, the lister thread its walk will run on (a Node thread and its modules: 0.1-0.2 s to
//   boot on a cold cache);
// - for a backup, restore or check, the derivation of the key that opens the pool (scrypt, ~0.35 s of
//   CPU on libuv's thread pool), found from the config with nothing but node:fs. Before, it started
//   once the command's modules were loaded and the config validated: ~0.3 s into the process.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { configRelative, resolveConfigPath } from '../config/path.js';
import { deriveSlotKeyAhead, parseKeySlot } from '../crypto/keys.js';
import { readPassphraseFile } from '../crypto/passphrase.js';
import { daemonBypassed, socketPathOf } from './socket-path.js';
import type { SpareWorkers } from '../replica/pipeline/worker-pool.js';
import { spareLister } from '../replica/pipeline/workers.js';

export interface EarlyStart {
  /** A lister thread without its walk yet (the agent context takes it; closed by whoever holds it last). */
  lister?: SpareWorkers;
}

/**
 * Starts what the command in `argv` will need first. A wrong guess costs a thread (closed when the
 * command ends) or one key derivation's CPU; nothing here reports an error: the command does, as before.
 */
export function startEarly(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): EarlyStart {
  const command = argv[0];
  if (argv.includes('--help') || argv.includes('-h')) return {};
  const early: EarlyStart = {};
  if (command === 'backup' && optionValue(argv, '--to') !== 'cloud') {
    try {
      early.lister = spareLister();
    } catch {
      // no thread now (resources): the backup starts its own when it needs it, and reports why if it cannot
    }
    deriveKeyAhead(argv, env, { daemonMayRun: true });
  } else if (command === 'restore' && optionValue(argv, '--from') !== 'cloud') {
    deriveKeyAhead(argv, env, { daemonMayRun: true });
  } else if (command === 'check') {
    deriveKeyAhead(argv, env, { daemonMayRun: false });
  }
  return early;
}

/** Ends what `startEarly` started and nothing took. */
export function closeEarly(early: EarlyStart): Promise<void> {
  return early.lister?.close() ?? Promise.resolve();
}

/** The value of option `name` (`--name value` or `--name=value`), if given. */
function optionValue(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === name) return argv[i + 1];
    if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
  }
  return undefined;
}

/**
 * Reads the config's pool, passphrase file and state directory as the command will (config/path.ts),
 * and starts deriving the key of the pool's key slot when it has exactly one (with several, the pool
 * tries them in turn and a guess could waste the CPU). Skipped when a daemon's control socket is there
 * (a backup or restore then runs in the daemon, `STRATA_NO_DAEMON=1` aside), when the config or the
 * passphrase file is not a regular file (a pipe must be left for the command to read), or when anything
 * is missing or malformed: the command reports that.
 */
function deriveKeyAhead(argv: readonly string[], env: NodeJS.ProcessEnv, options: { daemonMayRun: boolean }): void {
  try {
    const file = resolveConfigPath(optionValue(argv, '--config'), env);
    // Regular files only: a pipe (`--config <(…)`, a FIFO) can be read once, and that read is the command's.
    if (!statSync(file).isFile()) return;
    const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const { pool, passphraseFile, stateDir } = config;
    if (typeof pool !== 'string' || typeof passphraseFile !== 'string' || typeof stateDir !== 'string') return;
    if (options.daemonMayRun && !daemonBypassed(env) && existsSync(socketPathOf(configRelative(file, stateDir)))) return;
    const keys = path.join(configRelative(file, pool), 'keys');
    const slots = readdirSync(keys);
    if (slots.length !== 1) return;
    const secret = configRelative(file, passphraseFile);
    if (!statSync(secret).isFile()) return;
    const { passphrase } = readPassphraseFile(secret);
    deriveSlotKeyAhead(parseKeySlot(readFileSync(path.join(keys, slots[0]!)), slots[0]!), passphrase);
  } catch {
    // the command finds the same problem and reports it
  }
}
