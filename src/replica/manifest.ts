// Recovery-point manifests: what a recovery point is (group, source, time, root tree, stats).
import { IntegrityError } from '../errors.js';

export interface BackupStats {
  files: number;
  dirs: number;
  symlinks: number;
  /** Bytes of file content in the recovery point. */
  bytes: number;
  /** Files whose content was read (the rest came from the metadata cache). */
  filesRead: number;
  bytesRead: number;
  /** Data blobs (and their plaintext bytes) this run added to the pool; tree blobs are not counted. */
  newBlobs: number;
  newBytes: number;
  /** Bytes of packs this run wrote. */
  storedBytes: number;
  packs: number;
  warnings: number;
  durationMs: number;
}

export interface Manifest {
  v: 1;
  /** Protection group, or "" for an ad hoc `backup --path`. */
  group: string;
  /** The data source: its absolute path on the protected server. */
  source: string;
  /** "directory" or "sqlite". */
  sourceType: string;
  host: string;
  /** ISO time the backup started. */
  time: string;
  /** Root tree id (hex). */
  tree: string;
  /** Previous recovery point of the same source, if any. */
  parent: string | null;
  stats: BackupStats;
  /** Per-file problems, as "path: what". */
  warnings: string[];
}

export function encodeManifest(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify(m));
}

export function decodeManifest(buf: Buffer, what: string): Manifest {
  let m: Manifest;
  try {
    m = JSON.parse(buf.toString('utf8')) as Manifest;
  } catch (err) {
    throw new IntegrityError(`${what}: not a manifest`, { cause: err });
  }
  if (m.v !== 1 || typeof m.tree !== 'string' || !/^[0-9a-f]{64}$/.test(m.tree) || typeof m.time !== 'string' || typeof m.source !== 'string') {
    throw new IntegrityError(`${what}: malformed manifest`);
  }
  return m;
}
