// Pool locks: shared (backup, check, restore) and exclusive (prune, passphrase change). A lock names
// its pid, host and time and is refreshed while held; a stale one is broken safely, never by hand.
import { hostname } from 'node:os';
import type { Clock } from '../clock.js';
import { StrataError, isNotFound } from '../errors.js';
import { listAll, type ObjectStore } from '../store/object-store.js';
import { LOCKS_PREFIX, newObjectId } from './pool.js';

export const STALE_AFTER_MS = 30 * 60 * 1000;
export const REFRESH_EVERY_MS = 5 * 60 * 1000;

export interface LockRecord {
  pid: number;
  host: string;
  time: string;
  exclusive: boolean;
  operation: string;
}

export interface PoolLock {
  readonly id: string;
  release(): Promise<void>;
}

export interface LockOptions {
  exclusive: boolean;
  operation: string;
  clock: Clock;
  host?: string;
  pid?: number;
  /** For tests: whether a pid on this host is alive. */
  isAlive?: (pid: number) => boolean;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A lock is stale when its process is gone from this host, or it has not been refreshed for 30 minutes. */
export function isStale(rec: LockRecord, now: number, host: string, isAlive: (pid: number) => boolean): boolean {
  const age = now - Date.parse(rec.time);
  if (!(age < STALE_AFTER_MS)) return true;
  return rec.host === host && !isAlive(rec.pid);
}

/**
 * Takes a lock: writes ours, then looks at the others; a conflicting live lock makes us withdraw ours
 * and fail with STRATA_LOCKED, naming who holds it. Stale locks found on the way are removed.
 */
export async function acquireLock(store: ObjectStore, options: LockOptions): Promise<PoolLock> {
  const host = options.host ?? hostname();
  const pid = options.pid ?? process.pid;
  const isAlive = options.isAlive ?? pidAlive;
  const id = newObjectId();
  const key = `${LOCKS_PREFIX}${id}`;
  const record = (): LockRecord => ({ pid, host, time: new Date(options.clock.now()).toISOString(), exclusive: options.exclusive, operation: options.operation });
  await store.put(key, Buffer.from(JSON.stringify(record())));
  try {
    for (const info of await listAll(store, LOCKS_PREFIX)) {
      if (info.key === key) continue;
      let other: LockRecord;
      try {
        other = JSON.parse((await store.get(info.key)).toString('utf8')) as LockRecord;
      } catch (err) {
        if (isNotFound(err) || (err as { code?: string }).code === 'STRATA_NOT_FOUND') continue;
        if (err instanceof SyntaxError) {
          // A lock file torn by a crash of its writer's disk: treat as stale.
          await store.delete(info.key);
          continue;
        }
        throw err;
      }
      if (isStale(other, options.clock.now(), host, isAlive)) {
        await store.delete(info.key);
        continue;
      }
      if (options.exclusive || other.exclusive) {
        throw new StrataError(
          'STRATA_LOCKED',
          `the pool is locked by ${other.operation} (pid ${other.pid} on ${other.host}, since ${other.time}); wait for it to finish (a lock whose process died is removed automatically)`,
          { kind: 'failed' },
        );
      }
    }
  } catch (err) {
    await store.delete(key).catch(() => {});
    throw err;
  }
  const stopRefresh = options.clock.every(REFRESH_EVERY_MS, () => {
    void store.put(key, Buffer.from(JSON.stringify(record()))).catch(() => {});
  });
  return {
    id,
    release: async () => {
      stopRefresh();
      await store.delete(key);
    },
  };
}

export async function withLock<T>(store: ObjectStore, options: LockOptions, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireLock(store, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
