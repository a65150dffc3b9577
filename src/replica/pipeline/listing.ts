// A directory listing as it crosses from a lister thread (list-tasks.ts) to the backup walk: names,
// and the lstat fields the walk uses packed in one BigInt64Array (transferred, not copied), instead of
// a BigIntStats object of a dozen BigInts per entry cloned across.
import type { BigIntStats } from 'node:fs';
import type { Listing } from './dir-lister.js';
import { deserializeError, serializeError, type SerializedError } from './protocol.js';

export const ENTRY_KINDS = ['dir', 'file', 'symlink', 'socket', 'FIFO', 'block device', 'character device', 'special file'] as const;
export type EntryKind = (typeof ENTRY_KINDS)[number];

/** What the walk keeps of an entry's lstat. */
export interface EntryStat {
  kind: EntryKind;
  mode: number;
  uid: number;
  gid: number;
  size: bigint;
  nlink: bigint;
  dev: bigint;
  ino: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** Slots per entry in `PackedListing.stats`: kind (-1: lstat failed), mode, uid, gid, size, nlink, dev, ino, mtimeNs, ctimeNs. */
export const STAT_SLOTS = 10;

export interface PackedListing {
  /** Sorted names, exclusions dropped. */
  names: string[];
  /** `STAT_SLOTS` values per name. */
  stats: BigInt64Array;
  /** Why the lstat of `names[i]` failed, by `i`. */
  failed: { i: number; error: SerializedError }[];
  /** Set when the directory itself could not be read (then `names` is empty). */
  error: SerializedError | null;
}

export function kindOf(st: BigIntStats): EntryKind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isSocket()) return 'socket';
  if (st.isFIFO()) return 'FIFO';
  if (st.isBlockDevice()) return 'block device';
  if (st.isCharacterDevice()) return 'character device';
  return 'special file';
}

export function packListing(listing: Listing<BigIntStats>): PackedListing {
  const n = listing.names.length;
  const stats = new BigInt64Array(n * STAT_SLOTS);
  const failed: PackedListing['failed'] = [];
  for (let i = 0; i < n; i++) {
    const st = listing.stats[i];
    const o = i * STAT_SLOTS;
    if (!st) {
      stats[o] = -1n;
      failed.push({ i, error: serializeError(listing.errors[i]) });
      continue;
    }
    stats[o] = BigInt(ENTRY_KINDS.indexOf(kindOf(st)));
    stats[o + 1] = st.mode & 0o7777n;
    stats[o + 2] = st.uid;
    stats[o + 3] = st.gid;
    stats[o + 4] = st.size;
    stats[o + 5] = st.nlink;
    stats[o + 6] = st.dev;
    stats[o + 7] = st.ino; // read back as signed: compared and printed through entryAt, which undoes it
    stats[o + 8] = st.mtimeNs;
    stats[o + 9] = st.ctimeNs;
  }
  return { names: listing.names, stats, failed, error: listing.error === null ? null : serializeError(listing.error) };
}

const U64 = 1n << 64n;

/** Entry `i` of a packed listing, or null when its lstat failed (`failedError` says why). */
export function entryAt(p: PackedListing, i: number): EntryStat | null {
  const s = p.stats;
  const o = i * STAT_SLOTS;
  const kind = s[o]!;
  if (kind < 0n) return null;
  const unsigned = (v: bigint) => (v < 0n ? v + U64 : v);
  return {
    kind: ENTRY_KINDS[Number(kind)]!,
    mode: Number(s[o + 1]),
    uid: Number(s[o + 2]),
    gid: Number(s[o + 3]),
    size: s[o + 4]!,
    nlink: s[o + 5]!,
    dev: unsigned(s[o + 6]!),
    ino: unsigned(s[o + 7]!),
    mtimeNs: s[o + 8]!,
    ctimeNs: s[o + 9]!,
  };
}

/** The error the lstat of entry `i` failed with (rebuilt, code kept). */
export function failedError(p: PackedListing, i: number): Error | null {
  const f = p.failed.find((x) => x.i === i);
  return f ? deserializeError(f.error) : null;
}

// --- the walk-tree task's messages (list-tasks.ts sends, walk-feed.ts takes; here so the main thread need not load list-tasks.ts) ---

/** A part of a walk-tree task: listings in walk order (see `walkTree`). */
export interface WalkBatch {
  listings: { rel: string; listing: PackedListing }[];
}

/**
 * The control messages of a walk: the consumer has taken listings of this many entries off its queue,
 * or the walk is to run at most this many entries ahead from now on.
 */
export type WalkCredit = { consumed: number } | { aheadEntries: number };

/**
 * Entries (names and directories) a walk may run ahead of the consumer: ~10 MiB of listings at most,
 * and more than a 2 GiB corpus of 53k files holds, so an early walk never waits for the backup to begin.
 */
export const WALK_AHEAD_ENTRIES = 65536;
