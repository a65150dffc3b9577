// Versioned schema migrations. Each runs once, in order, inside a transaction; user_version records the last.

export const MIGRATIONS: string[] = [
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
];
