// The local SQLite catalog: a cache of what the pool (and the vault) hold, plus jobs and state.
// Everything in it but jobs and state can be rebuilt from the pool (see replica/catalog-sync.ts).
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { StrataError } from '../errors.js';
import { BlobIdSet } from './blob-id-set.js';
import { MIGRATIONS } from './migrations.js';

export interface BlobLocation {
  id: Buffer;
  type: number;
  packId: string;
  offset: number;
  length: number;
  rawLength: number;
  compression: number;
}

export interface PackRow {
  id: string;
  size: number;
  blobCount: number;
  indexId: string;
  localState: string;
  cloudState: string;
  cloudUpdated: number | null;
}

export interface RecoveryPointRow {
  id: string;
  group: string;
  source: string;
  sourceType: string;
  host: string;
  time: number;
  tree: string;
  parent: string | null;
  stats: Record<string, number>;
  warnings: string[];
  diskState: string;
  cloudState: string;
  serverId: string | null;
}

export interface FileCacheEntry {
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  inode: string;
  content: string[];
}

export interface JobRow {
  id: number;
  kind: string;
  group: string | null;
  state: string;
  started: number;
  ended: number | null;
  pid: number | null;
  progress: unknown;
  result: unknown;
  error: string | null;
}

export interface IndexedPackInput {
  id: string;
  size: number;
  entries: { type: number; id: Buffer; offset: number; length: number; rawLength: number; compression: number }[];
}

type Row = Record<string, unknown>;

export class Catalog {
  readonly db: Database.Database;
  readonly file: string;

  private constructor(db: Database.Database, file: string) {
    this.db = db;
    this.file = file;
  }

  /** Opens (creating if needed) the catalog at `file`, in WAL mode, and applies pending migrations. */
  static open(file: string): Catalog {
    let db: Database.Database;
    try {
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 10000');
      db.pragma('foreign_keys = ON');
    } catch (err) {
      throw new StrataError('STRATA_CATALOG_OPEN', `cannot open the catalog ${file}: ${(err as Error).message}; check "stateDir" in the config (it must be on a local disk)`, {
        cause: err,
      });
    }
    const catalog = new Catalog(db, file);
    catalog.#migrate();
    return catalog;
  }

  #migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      throw new StrataError('STRATA_CATALOG_VERSION', `the catalog ${this.file} is from a newer strata (schema ${current}); upgrade strata or rebuild the catalog`);
    }
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // --- meta and state (key/value) ---

  getMeta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as Row | undefined)?.['value'] as string | undefined;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  getState<T>(key: string): T | undefined {
    const raw = (this.db.prepare('SELECT value FROM state WHERE key = ?').get(key) as Row | undefined)?.['value'] as string | undefined;
    return raw === undefined ? undefined : (JSON.parse(raw) as T);
  }

  setState(key: string, value: unknown): void {
    this.db.prepare('INSERT INTO state(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, JSON.stringify(value));
  }

  deleteState(key: string): void {
    this.db.prepare('DELETE FROM state WHERE key = ?').run(key);
  }

  /** Empties everything that is rebuilt from the pool (blobs, packs, index segments, recovery points, file cache). */
  clearPoolCache(): void {
    this.transaction(() => {
      for (const t of ['blobs', 'packs', 'index_segments', 'recovery_points', 'file_cache']) this.db.exec(`DELETE FROM ${t}`);
      this.db.prepare("DELETE FROM meta WHERE key = 'pool_id'").run();
    });
  }

  // --- index: packs and blobs ---

  indexSegmentIds(): string[] {
    return (this.db.prepare('SELECT id FROM index_segments').all() as Row[]).map((r) => r['id'] as string);
  }

  /**
   * Records an index segment and its packs and blobs, in one transaction. Idempotent. A blob or pack
   * already recorded is re-pointed here (the last segment recorded wins).
   */
  addIndexSegment(indexId: string, packs: IndexedPackInput[]): void {
    const insSeg = this.db.prepare('INSERT OR IGNORE INTO index_segments(id) VALUES (?)');
    const insPack = this.db.prepare(
      'INSERT INTO packs(id, size, blob_count, index_id) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET index_id = excluded.index_id, size = excluded.size, blob_count = excluded.blob_count',
    );
    // A blob already known is re-pointed to this segment's pack: when prune repacks, the segment it
    // writes moves live blobs to new packs before the superseded segments (and their packs) are forgotten.
    const insBlob = this.db.prepare(
      `INSERT INTO blobs(id, type, pack_id, offset, length, raw_length, compression) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(id) DO UPDATE SET type = excluded.type, pack_id = excluded.pack_id, offset = excluded.offset, length = excluded.length,
         raw_length = excluded.raw_length, compression = excluded.compression`,
    );
    this.transaction(() => {
      insSeg.run(indexId);
      for (const p of packs) {
        insPack.run(p.id, p.size, p.entries.length, indexId);
        for (const e of p.entries) insBlob.run(e.id, e.type, p.id, e.offset, e.length, e.rawLength, e.compression);
      }
    });
  }

  /** Forgets an index segment (pruned or superseded); its packs and their blobs go unless another segment names them. */
  removeIndexSegment(indexId: string): void {
    this.transaction(() => {
      const packIds = (this.db.prepare('SELECT id FROM packs WHERE index_id = ?').all(indexId) as Row[]).map((r) => r['id'] as string);
      const delBlobs = this.db.prepare('DELETE FROM blobs WHERE pack_id = ?');
      const delPack = this.db.prepare('DELETE FROM packs WHERE id = ?');
      for (const id of packIds) {
        delBlobs.run(id);
        delPack.run(id);
      }
      this.db.prepare('DELETE FROM index_segments WHERE id = ?').run(indexId);
    });
  }

  knownBlobIds(): BlobIdSet {
    const count = (this.db.prepare('SELECT count(*) AS n FROM blobs').get() as Row)['n'] as number;
    const set = new BlobIdSet(count + 1024);
    for (const row of this.db.prepare('SELECT id FROM blobs').raw().iterate() as Iterable<[Buffer]>) set.add(row[0]);
    return set;
  }

  lookupBlob(id: Buffer): BlobLocation | undefined {
    const r = this.db.prepare('SELECT * FROM blobs WHERE id = ?').get(id) as Row | undefined;
    return r ? toBlobLocation(r) : undefined;
  }

  /** A fast lookup function over a prepared statement, for restore and check. */
  blobLookup(): (id: Buffer) => BlobLocation | undefined {
    const stmt = this.db.prepare('SELECT * FROM blobs WHERE id = ?');
    return (id) => {
      const r = stmt.get(id) as Row | undefined;
      return r ? toBlobLocation(r) : undefined;
    };
  }

  blobsInPack(packId: string): BlobLocation[] {
    return (this.db.prepare('SELECT * FROM blobs WHERE pack_id = ? ORDER BY offset').all(packId) as Row[]).map(toBlobLocation);
  }

  packs(): PackRow[] {
    return (this.db.prepare('SELECT * FROM packs').all() as Row[]).map(toPackRow);
  }

  pack(id: string): PackRow | undefined {
    const r = this.db.prepare('SELECT * FROM packs WHERE id = ?').get(id) as Row | undefined;
    return r ? toPackRow(r) : undefined;
  }

  setPackLocalState(id: string, state: 'present' | 'missing' | 'damaged'): void {
    this.db.prepare('UPDATE packs SET local_state = ? WHERE id = ?').run(state, id);
  }

  setPackCloudState(id: string, state: string, at: number | null): void {
    this.db.prepare('UPDATE packs SET cloud_state = ?, cloud_updated = ? WHERE id = ?').run(state, at, id);
  }

  /** Packs in a given cloud state (none | uploaded | indexed | deleted). */
  packsInCloudState(state: string): PackRow[] {
    return (this.db.prepare('SELECT * FROM packs WHERE cloud_state = ?').all(state) as Row[]).map(toPackRow);
  }

  // --- soft deletes in the vault ---

  markCloudDeletion(key: string, at: number): void {
    this.db.prepare('INSERT OR IGNORE INTO cloud_deletions(key, marked_at) VALUES (?, ?)').run(key, at);
  }

  cloudDeletions(olderThan = Number.MAX_SAFE_INTEGER): { key: string; markedAt: number }[] {
    return (this.db.prepare('SELECT key, marked_at FROM cloud_deletions WHERE marked_at <= ? ORDER BY key').all(olderThan) as Row[]).map((r) => ({
      key: r['key'] as string,
      markedAt: r['marked_at'] as number,
    }));
  }

  removeCloudDeletion(key: string): void {
    this.db.prepare('DELETE FROM cloud_deletions WHERE key = ?').run(key);
  }

  // --- recovery points ---

  addRecoveryPoint(rp: Omit<RecoveryPointRow, 'diskState' | 'cloudState' | 'serverId'> & Partial<Pick<RecoveryPointRow, 'diskState' | 'cloudState' | 'serverId'>>): void {
    this.db
      .prepare(
        `INSERT INTO recovery_points(id, grp, source, source_type, host, time, tree, parent, stats, warnings, disk_state, cloud_state, server_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET disk_state = excluded.disk_state`,
      )
      .run(
        rp.id,
        rp.group,
        rp.source,
        rp.sourceType,
        rp.host,
        rp.time,
        rp.tree,
        rp.parent,
        JSON.stringify(rp.stats),
        JSON.stringify(rp.warnings),
        rp.diskState ?? 'present',
        rp.cloudState ?? 'none',
        rp.serverId ?? null,
      );
  }

  recoveryPoints(filter: { group?: string; source?: string } = {}): RecoveryPointRow[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.group !== undefined) {
      where.push('grp = ?');
      args.push(filter.group);
    }
    if (filter.source !== undefined) {
      where.push('source = ?');
      args.push(filter.source);
    }
    const sql = `SELECT * FROM recovery_points ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY time, id`;
    return (this.db.prepare(sql).all(...args) as Row[]).map(toRecoveryPoint);
  }

  /** Finds a recovery point by full id, unique id prefix (at least 6 hex digits), or `latest` (optionally within a group). */
  findRecoveryPoint(ref: string, group?: string): RecoveryPointRow {
    let rows: RecoveryPointRow[];
    if (ref === 'latest') {
      rows = this.recoveryPoints(group === undefined ? {} : { group }).filter((r) => r.diskState === 'present' || r.cloudState === 'uploaded');
      rows = rows.slice(-1);
    } else {
      if (!/^[0-9a-f]{6,64}$/.test(ref)) {
        throw new StrataError('STRATA_RP_INVALID', `"${ref}" is not a recovery point id (hex, at least 6 digits, or "latest"); list them with 'strata recovery-points'`, { kind: 'usage' });
      }
      rows = (this.db.prepare('SELECT * FROM recovery_points WHERE id LIKE ?').all(`${ref}%`) as Row[]).map(toRecoveryPoint);
    }
    if (rows.length === 0) throw new StrataError('STRATA_RP_NOT_FOUND', `no recovery point ${ref}; list them with 'strata recovery-points'`, { kind: 'usage' });
    if (rows.length > 1) throw new StrataError('STRATA_RP_AMBIGUOUS', `recovery point prefix ${ref} matches ${rows.length} points; give more digits`, { kind: 'usage' });
    return rows[0]!;
  }

  removeRecoveryPoint(id: string): void {
    this.db.prepare('DELETE FROM recovery_points WHERE id = ?').run(id);
  }

  setRecoveryPointState(id: string, states: { disk?: string; cloud?: string }): void {
    if (states.disk !== undefined) this.db.prepare('UPDATE recovery_points SET disk_state = ? WHERE id = ?').run(states.disk, id);
    if (states.cloud !== undefined) this.db.prepare('UPDATE recovery_points SET cloud_state = ? WHERE id = ?').run(states.cloud, id);
  }

  // --- file-metadata cache ---

  loadFileCache(source: string): Map<string, FileCacheEntry> {
    const map = new Map<string, FileCacheEntry>();
    for (const r of this.db.prepare('SELECT * FROM file_cache WHERE source = ?').iterate(source) as Iterable<Row>) {
      map.set(r['path'] as string, {
        size: r['size'] as number,
        mtimeNs: r['mtime_ns'] as string,
        ctimeNs: r['ctime_ns'] as string,
        inode: r['inode'] as string,
        content: JSON.parse(r['content'] as string) as string[],
      });
    }
    return map;
  }

  /** Replaces a source's whole cache (after its recovery point has committed). */
  replaceFileCache(source: string, entries: Map<string, FileCacheEntry>): void {
    const ins = this.db.prepare('INSERT INTO file_cache(source, path, size, mtime_ns, ctime_ns, inode, content) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.transaction(() => {
      this.db.prepare('DELETE FROM file_cache WHERE source = ?').run(source);
      for (const [p, e] of entries) ins.run(source, p, e.size, e.mtimeNs, e.ctimeNs, e.inode, JSON.stringify(e.content));
    });
  }

  clearFileCache(): void {
    this.db.exec('DELETE FROM file_cache');
  }

  // --- jobs ---

  createJob(kind: string, group: string | null, now: number, pid = process.pid): number {
    return Number(this.db.prepare("INSERT INTO jobs(kind, grp, state, started, pid) VALUES (?, ?, 'running', ?, ?)").run(kind, group, now, pid).lastInsertRowid);
  }

  updateJobProgress(id: number, progress: unknown): void {
    this.db.prepare('UPDATE jobs SET progress = ? WHERE id = ?').run(JSON.stringify(progress), id);
  }

  finishJob(id: number, state: string, now: number, result: unknown, error: string | null = null): void {
    this.db.prepare('UPDATE jobs SET state = ?, ended = ?, result = ?, error = ? WHERE id = ?').run(state, now, JSON.stringify(result ?? null), error, id);
  }

  /** Records a job that did not run (refused by the gate, or a missed schedule). */
  recordSkippedJob(kind: string, group: string | null, now: number, reason: string): number {
    return Number(
      this.db.prepare("INSERT INTO jobs(kind, grp, state, started, ended, error) VALUES (?, ?, 'skipped', ?, ?, ?)").run(kind, group, now, now, reason).lastInsertRowid,
    );
  }

  jobs(limit = 100): JobRow[] {
    return (this.db.prepare('SELECT * FROM jobs ORDER BY id DESC LIMIT ?').all(limit) as Row[]).map(toJobRow);
  }

  job(id: number): JobRow | undefined {
    const r = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined;
    return r ? toJobRow(r) : undefined;
  }

  /** Marks jobs left 'running' by a process that is gone as interrupted; returns how many. */
  markInterruptedJobs(now: number, isAlive: (pid: number) => boolean): number {
    const running = this.db.prepare("SELECT id, pid FROM jobs WHERE state = 'running'").all() as Row[];
    let n = 0;
    for (const r of running) {
      const pid = r['pid'] as number | null;
      if (pid === null || !isAlive(pid)) {
        this.db.prepare("UPDATE jobs SET state = 'interrupted', ended = ?, error = 'the process running this job stopped before it finished' WHERE id = ?").run(now, r['id']);
        n++;
      }
    }
    return n;
  }
}

function toBlobLocation(r: Row): BlobLocation {
  return {
    id: r['id'] as Buffer,
    type: r['type'] as number,
    packId: r['pack_id'] as string,
    offset: r['offset'] as number,
    length: r['length'] as number,
    rawLength: r['raw_length'] as number,
    compression: r['compression'] as number,
  };
}

function toPackRow(r: Row): PackRow {
  return {
    id: r['id'] as string,
    size: r['size'] as number,
    blobCount: r['blob_count'] as number,
    indexId: r['index_id'] as string,
    localState: r['local_state'] as string,
    cloudState: r['cloud_state'] as string,
    cloudUpdated: (r['cloud_updated'] as number | null) ?? null,
  };
}

function toRecoveryPoint(r: Row): RecoveryPointRow {
  return {
    id: r['id'] as string,
    group: r['grp'] as string,
    source: r['source'] as string,
    sourceType: r['source_type'] as string,
    host: r['host'] as string,
    time: r['time'] as number,
    tree: r['tree'] as string,
    parent: (r['parent'] as string | null) ?? null,
    stats: JSON.parse(r['stats'] as string) as Record<string, number>,
    warnings: JSON.parse(r['warnings'] as string) as string[],
    diskState: r['disk_state'] as string,
    cloudState: r['cloud_state'] as string,
    serverId: (r['server_id'] as string | null) ?? null,
  };
}

function toJobRow(r: Row): JobRow {
  const parse = (v: unknown) => (typeof v === 'string' ? (JSON.parse(v) as unknown) : null);
  return {
    id: r['id'] as number,
    kind: r['kind'] as string,
    group: (r['grp'] as string | null) ?? null,
    state: r['state'] as string,
    started: r['started'] as number,
    ended: (r['ended'] as number | null) ?? null,
    pid: (r['pid'] as number | null) ?? null,
    progress: parse(r['progress']),
    result: parse(r['result']),
    error: (r['error'] as string | null) ?? null,
  };
}
