// Versioned schema migrations. Each runs once, in order, inside a transaction; user_version records the last.
import type Database from 'better-sqlite3';
import { packFileCacheRows } from './file-cache.js';

/** SQL to run, or a step that needs code (converting rows to a format SQL cannot write). */
export type Migration = string | ((db: Database.Database) => void);

export const MIGRATIONS: Migration[] = [
  // 1: the disk half
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE index_segments (
    id TEXT PRIMARY KEY,
    cloud_state TEXT NOT NULL DEFAULT 'none'
  );
  CREATE TABLE packs (
    id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    blob_count INTEGER NOT NULL,
    index_id TEXT NOT NULL,
    local_state TEXT NOT NULL DEFAULT 'present',   -- present | missing | damaged
    cloud_state TEXT NOT NULL DEFAULT 'none',      -- none | staged | uploaded | deleted
    cloud_updated INTEGER
  );
  CREATE TABLE blobs (
    id BLOB PRIMARY KEY,
    type INTEGER NOT NULL,
    pack_id TEXT NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    raw_length INTEGER NOT NULL,
    compression INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX blobs_by_pack ON blobs(pack_id);
  CREATE TABLE recovery_points (
    id TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    source TEXT NOT NULL,
    source_type TEXT NOT NULL,
    host TEXT NOT NULL,
    time INTEGER NOT NULL,
    tree TEXT NOT NULL,
    parent TEXT,
    stats TEXT NOT NULL,
    warnings TEXT NOT NULL,
    disk_state TEXT NOT NULL DEFAULT 'present',   -- present | deleted
    cloud_state TEXT NOT NULL DEFAULT 'none',     -- none | uploading | uploaded | deleted
    server_id TEXT
  );
  CREATE INDEX recovery_points_by_source ON recovery_points(grp, source, time);
  CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    grp TEXT,
    state TEXT NOT NULL,            -- queued | running | completed | warnings | failed | skipped | interrupted
    started INTEGER NOT NULL,
    ended INTEGER,
    pid INTEGER,
    progress TEXT,
    result TEXT,
    error TEXT
  );
  CREATE TABLE file_cache (
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns TEXT NOT NULL,
    ctime_ns TEXT NOT NULL,
    inode TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (source, path)
  ) WITHOUT ROWID;
  CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  `,
  // 2: the cloud copy: blobs marked for deletion in the vault (soft delete), removed after 14 days
  `
  CREATE TABLE cloud_deletions (
    key TEXT PRIMARY KEY,          -- object key under the server's prefix in the vault
    marked_at INTEGER NOT NULL
  );
  `,
  // 3: the file-metadata cache keyed by (source, directory, name), so a backup reads one directory's rows
  // at a time and writes only what changed; each entry is one blob (fileCacheData in catalog.ts: size,
  // mtime, ctime and inode as 64-bit big-endian, then the 32-byte content ids). Rows are converted, not
  // dropped: the next backup still skips unchanged files.
  `
  CREATE TABLE file_cache_v3 (
    source TEXT NOT NULL,
    dir TEXT NOT NULL,              -- relative directory, '' for the root
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (source, dir, name)
  ) WITHOUT ROWID;
  INSERT INTO file_cache_v3(source, dir, name, data)
    SELECT source,
           rtrim(rtrim(path, replace(path, '/', '')), '/'),
           substr(path, length(rtrim(path, replace(path, '/', ''))) + 1),
           unhex(printf('%016x%016x%016x%016x', size, CAST(mtime_ns AS INTEGER), CAST(ctime_ns AS INTEGER), CAST(inode AS INTEGER))
                 || replace(replace(replace(replace(content, '[', ''), ']', ''), '"', ''), ',', '')) AS data
    FROM file_cache
    WHERE data IS NOT NULL;  -- a row that does not convert is dropped: that file is read again
  DROP TABLE file_cache;
  ALTER TABLE file_cache_v3 RENAME TO file_cache;
  `,
  // 4: what started each job ('scheduled' or 'ad hoc'), so the history says so across daemon restarts.
  // Jobs recorded before this migration have none.
  `
  ALTER TABLE jobs ADD COLUMN trigger TEXT;
  `,
  // 5: a token of the blob index's state, replaced by a random one whenever blobs are forgotten (by
  // trigger, whatever deletes them) or recorded (addIndexSegment, once per segment). A snapshot of the
  // dedup set saved with the token is exact while the token is unchanged (catalog.ts knownBlobIds).
  `
  CREATE TABLE blob_generation (n INTEGER NOT NULL);
  INSERT INTO blob_generation(n) VALUES (random());
  CREATE TRIGGER blobs_deleted AFTER DELETE ON blobs BEGIN UPDATE blob_generation SET n = random(); END;
  `,
  // 6: the file-metadata cache as one row per directory, its entries packed in one blob (file-cache.ts):
  // a backup's walk read 53k rows one per file, which cost ~4x the time of reading 2.8k directories.
  // The entries are converted, not dropped: the next backup still skips unchanged files.
  packFileCacheRows,
];
