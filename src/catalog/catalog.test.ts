import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog } from './catalog.js';
import { fileCacheContent, fileCacheData, fileCacheMatches, packDirCache, unpackDirCache, type FileCacheEntry } from './file-cache.js';
import { MIGRATIONS } from './migrations.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'strata-catalog-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const id = (n: number) => Buffer.alloc(32, n).toString('hex');

/** A catalog file at an older schema (the first `version` migrations applied), as an older strata left it. */
function catalogAtSchema(file: string, version: number): Database.Database {
  const db = new Database(file);
  for (const step of MIGRATIONS.slice(0, version)) {
    if (typeof step === 'string') db.exec(step);
    else step(db);
  }
  db.pragma(`user_version = ${version}`);
  return db;
}
const entry = (n: number, content = [id(n)]): FileCacheEntry => ({ size: n, mtimeNs: `${1_700_000_000_000_000_000n + BigInt(n)}`, ctimeNs: `${n * 7}`, inode: `${n + 100}`, content });

describe('file-metadata cache', () => {
  it('stores an entry as one blob and matches it only against the same size, mtime, ctime and inode', () => {
    const e = entry(5, [id(1), id(2)]);
    const data = fileCacheData(e);
    const st = { size: 5n, mtimeNs: BigInt(e.mtimeNs), ctimeNs: 35n, ino: 105n };
    expect(fileCacheMatches(data, st)).toBe(true);
    expect(fileCacheContent(data)).toEqual([id(1), id(2)]);
    for (const k of ['size', 'mtimeNs', 'ctimeNs', 'ino'] as const) expect(fileCacheMatches(data, { ...st, [k]: st[k] + 1n })).toBe(false);
    expect(fileCacheContent(fileCacheData(entry(0, [])))).toEqual([]);
  });

  it('packs a directory into one blob and reads back every name and entry; a blob that does not parse gives none', () => {
    const entries = new Map<string, Buffer>([
      ['plain.txt', fileCacheData(entry(1))],
      ['é ü 日本 🙂', fileCacheData(entry(2, [id(3), id(4)]))],
      ['empty', fileCacheData(entry(0, []))],
      ['many', fileCacheData(entry(5, Array.from({ length: 3000 }, (_, i) => id(i % 250))))],
      ['x'.repeat(255), fileCacheData(entry(6))],
    ]);
    const blob = packDirCache(entries);
    const back = unpackDirCache(blob);
    expect([...back.keys()]).toEqual([...entries.keys()]);
    for (const [name, data] of entries) expect(back.get(name)!.equals(data)).toBe(true);
    expect(unpackDirCache(packDirCache(new Map())).size).toBe(0);
    // Damaged or from another format: nothing, so the files are read again.
    for (let cut = 1; cut < 40; cut++) expect(unpackDirCache(blob.subarray(0, blob.length - cut)).size).toBe(0);
    const other = Buffer.from(blob);
    other[0] = 2;
    expect(unpackDirCache(other).size).toBe(0);
    expect(unpackDirCache(Buffer.alloc(0)).size).toBe(0);
  });

  it('an update writes only the directories it staged, drops directories not kept, and leaves other sources alone', () => {
    const c = Catalog.open(path.join(dir, 'catalog.db'));
    const before = new Map<string, FileCacheEntry>();
    // More directories than one staging batch, and more bytes than one.
    for (let i = 0; i < 6000; i++) before.set(`d${i % 1500}/f${i}`, entry(i, [id(i % 200), id(i % 7)]));
    before.set('top', entry(9));
    c.replaceFileCache('src', before);
    c.replaceFileCache('other', new Map([['d0/f0', entry(1)]]));
    expect(c.loadFileCache('src')).toEqual(before);
    expect(c.fileCacheDirs('src').length).toBe(1501);
    expect(c.fileCacheDir('src', 'd1').size).toBe(4);

    const u = c.fileCacheUpdate('src');
    const expected = new Map(before);
    const entriesOf = (d: string) => new Map([...expected].filter(([p]) => p.startsWith(`${d}/`)).map(([p, e]) => [p.slice(d.length + 1), fileCacheData(e)]));
    // 1100 directories rewritten (one entry replaced, one added): more than a staging batch.
    for (let k = 0; k < 1100; k++) {
      expected.set(`d${k}/f${k}`, entry(k + 1));
      expected.set(`d${k}/new`, entry(42));
      u.putDir(`d${k}`, entriesOf(`d${k}`));
    }
    // A directory emptied (its row goes), one staged twice (the last wins), and the gone ones.
    for (const k of [...expected.keys()]) if (k.startsWith('d1100/')) expected.delete(k);
    u.putDir('d1100', new Map());
    u.putDir('d1101', new Map([['a', fileCacheData(entry(1))]]));
    for (const k of [...expected.keys()]) if (k.startsWith('d1101/')) expected.delete(k);
    expected.set('d1101/b', entry(2));
    u.putDir('d1101', entriesOf('d1101'));
    const kept = new Set(['', ...Array.from({ length: 1400 }, (_, k) => `d${k}`)]);
    for (const k of [...expected.keys()]) if (!kept.has(k.includes('/') ? k.slice(0, k.indexOf('/')) : '')) expected.delete(k);
    // Nothing changes before commit.
    expect(c.loadFileCache('src')).toEqual(before);
    c.transaction(() => u.commit(kept));
    u.discard();
    expect(c.loadFileCache('src')).toEqual(expected);
    expect(c.fileCacheDirs('src').length).toBe(1400);
    expect(c.loadFileCache('other')).toEqual(new Map([['d0/f0', entry(1)]]));

    // Discarded without commit: no change.
    const v = c.fileCacheUpdate('src');
    for (let k = 0; k < 1300; k++) v.putDir(`d${k}`, new Map());
    v.discard();
    expect(c.loadFileCache('src')).toEqual(expected);
    c.close();
  });

  it('refuses a catalog from a newer strata with a way out that works: move it aside, rebuild', () => {
    const file = path.join(dir, 'newer.db');
    Catalog.open(file).close();
    const db = new Database(file);
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    let err: unknown;
    try {
      Catalog.open(file);
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('STRATA_CATALOG_VERSION');
    expect((err as Error).message).toMatch(/move the file aside and run 'strata catalog rebuild'/);
    // What the message says to do: a fresh catalog opens where the old one was.
    renameSync(file, `${file}.newer`);
    const fresh = Catalog.open(file);
    expect(fresh.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    fresh.close();
  });

  it('migration 6 packs the rows of each directory into one, for every source', () => {
    const file = path.join(dir, 'v5.db');
    const db = catalogAtSchema(file, 5);
    const ins = db.prepare('INSERT INTO file_cache(source, dir, name, data) VALUES (?, ?, ?, ?)');
    const rows: [string, string, string, FileCacheEntry][] = [];
    for (let i = 0; i < 500; i++) rows.push([`g\u0000/src${i % 2}`, i % 10 === 0 ? '' : `a/d${i % 13}`, `f${i}`, entry(i, i % 3 === 0 ? [] : [id(i % 250)])]);
    for (const [source, d, name, e] of rows) ins.run(source, d, name, fileCacheData(e));
    db.close();

    const c = Catalog.open(file);
    expect(c.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    for (const source of ['g\u0000/src0', 'g\u0000/src1']) {
      const want = new Map(rows.filter((r) => r[0] === source).map(([, d, name, e]) => [d ? `${d}/${name}` : name, e]));
      expect(c.loadFileCache(source)).toEqual(want);
    }
    expect(c.fileCacheDirs('g\u0000/src0').sort()).toEqual(['', ...new Set(rows.filter((r) => r[0] === 'g\u0000/src0' && r[1]).map((r) => r[1]))].sort());
    expect((c.db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'file_cache'").pluck().get() as number)).toBe(0);
    c.close();
  });

  it('migration 3 converts the old cache rows (path, JSON content) and drops a row it cannot convert', () => {
    const file = path.join(dir, 'old.db');
    const db = catalogAtSchema(file, 2);
    const ins = db.prepare('INSERT INTO file_cache(source, path, size, mtime_ns, ctime_ns, inode, content) VALUES (?, ?, ?, ?, ?, ?, ?)');
    const rows: [string, FileCacheEntry][] = [
      ['top.txt', entry(1)],
      ['a/b/c.txt', entry(2, [id(3), id(4)])],
      ['a/empty', entry(0, [])],
      ['a/b/-1', { ...entry(3), mtimeNs: '-5' }],
    ];
    for (const [p, e] of rows) ins.run('g\u0000/src', p, e.size, e.mtimeNs, e.ctimeNs, e.inode, JSON.stringify(e.content));
    ins.run('g\u0000/src', 'a/bad', 1, '1', '1', '1', '["not hex"]');
    db.close();

    const c = Catalog.open(file);
    expect(c.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    expect(c.loadFileCache('g\u0000/src')).toEqual(new Map(rows));
    expect(c.fileCacheDir('g\u0000/src', 'a/b').size).toBe(2);
    c.close();
  });
});

describe('blob lookups', () => {
  it('the bulk index answers as the one-by-one lookup does, and the id set pages through every blob', () => {
    const c = Catalog.open(path.join(dir, 'catalog.db'));
    const n = 70_000; // more than one page of knownBlobIds
    const blobId = (i: number) => createHash('sha256').update(String(i)).digest();
    const packs = Array.from({ length: 7 }, (_, p) => ({
      id: Buffer.alloc(32, p + 1).toString('hex'),
      size: 1 << 24,
      entries: Array.from({ length: n / 7 }, (_, k) => {
        const i = p * (n / 7) + k;
        return { type: i % 2, id: blobId(i), offset: k * 1000 + 2 ** 33, length: 900 + (i % 50), rawLength: 4_000_000 + i, compression: i % 2 };
      }),
    }));
    c.addIndexSegment('seg', packs);
    const known = c.loadKnownBlobIds().set;
    expect(known.size).toBe(n);
    for (let i = 0; i < n; i += 997) expect(known.has(blobId(i))).toBe(true);
    expect(known.has(blobId(n + 1))).toBe(false);

    const one = c.blobLookup({ bulkAfter: Number.MAX_SAFE_INTEGER });
    const bulk = c.blobLookup({ bulkAfter: 3 });
    for (let i = 0; i < n; i += 211) expect(bulk(blobId(i))).toEqual(one(blobId(i)));
    expect(bulk(blobId(n + 5))).toBeUndefined();
    expect(c.blobIndex().size).toBe(n);
    c.close();
  });

  it('an index read ahead is used while no blob was recorded or forgotten since, and ignored after', () => {
    const c = Catalog.open(path.join(dir, 'catalog.db'));
    const id = createHash('sha256').update('moved').digest();
    const segment = (name: string, pack: number, offset: number) =>
      c.addIndexSegment(name, [{ id: Buffer.alloc(32, pack).toString('hex'), size: 1 << 20, entries: [{ type: 1, id, offset, length: 10, rawLength: 10, compression: 0 }] }]);
    segment('a', 1, 100);
    const ahead = c.blobIndexSnapshot();
    expect(c.blobLookup({ preloaded: ahead })(id)).toMatchObject({ packId: Buffer.alloc(32, 1).toString('hex'), offset: 100 });
    // Repacked meanwhile (prune writes a segment that moves the blob): the stale index is not used.
    segment('b', 2, 200);
    const stale = c.blobLookup({ preloaded: ahead, bulkAfter: Number.MAX_SAFE_INTEGER });
    expect(stale(id)).toMatchObject({ packId: Buffer.alloc(32, 2).toString('hex'), offset: 200 });
    // Forgotten meanwhile: not found, though the index read ahead still holds it.
    const before = c.blobIndexSnapshot();
    expect(before.index.get(id)).toBeDefined();
    c.db.prepare('DELETE FROM blobs WHERE id = ?').run(id);
    expect(c.blobLookup({ preloaded: before })(id)).toBeUndefined();
    c.close();
  });
});

describe('the dedup set snapshot', () => {
  const blobId = (i: number) => createHash('sha256').update(`blob ${i}`).digest();
  const segment = (c: Catalog, name: string, from: number, count: number) =>
    c.addIndexSegment(name, [
      {
        id: createHash('sha256').update(name).digest('hex'),
        size: 1 << 20,
        entries: Array.from({ length: count }, (_, k) => ({ type: 1, id: blobId(from + k), offset: k * 100, length: 100, rawLength: 100, compression: 0 })),
      },
    ]);

  it('the blob generation moves with every segment recorded and every blob forgotten, to a token never seen before', () => {
    const c = Catalog.open(path.join(dir, 'catalog.db'));
    const seen = new Set<string>([c.blobGeneration()]);
    const a = segment(c, 'a', 0, 10);
    expect(a.generationBefore).toBe([...seen][0]);
    expect(c.blobGeneration()).toBe(a.generationAfter);
    seen.add(a.generationAfter);
    const b = segment(c, 'b', 10, 10);
    expect(b.generationBefore).toBe(a.generationAfter);
    seen.add(b.generationAfter);
    c.removeIndexSegment('a');
    seen.add(c.blobGeneration());
    c.db.prepare('DELETE FROM blobs WHERE id = ?').run(blobId(15)); // any delete, whoever makes it
    seen.add(c.blobGeneration());
    expect(seen.size).toBe(5);
    const unchanged = c.blobGeneration();
    c.recoveryPoints({});
    expect(c.blobGeneration()).toBe(unchanged);
    c.close();
  });

  it('is read instead of the index only while the generation it was saved at holds, and never once a blob is forgotten', () => {
    const file = path.join(dir, 'catalog.db');
    const c = Catalog.open(file);
    segment(c, 'a', 0, 50);
    segment(c, 'b', 50, 50);
    const set = c.loadKnownBlobIds().set;
    const marker = randomBytes(32); // in the saved set but in no segment: shows which one was read
    set.add(marker);
    c.saveKnownBlobIds(set, c.blobGeneration());
    expect(c.loadKnownBlobIds().set.has(marker)).toBe(true);

    c.removeIndexSegment('a'); // prune forgets blobs 0-49
    const after = c.loadKnownBlobIds().set;
    expect(after.has(marker)).toBe(false);
    expect(after.has(blobId(3))).toBe(false);
    expect(after.has(blobId(73))).toBe(true);
    expect(after.size).toBe(50);

    // Saved again, then damaged on disk: the index is read instead.
    c.saveKnownBlobIds(set, c.blobGeneration());
    expect(c.loadKnownBlobIds().set.has(marker)).toBe(true);
    const snap = readFileSync(`${file}-known`);
    snap[snap.length - 5]! ^= 1;
    writeFileSync(`${file}-known`, snap);
    expect(c.loadKnownBlobIds().set.has(marker)).toBe(false);
    expect(c.loadKnownBlobIds().set.size).toBe(50);
    c.close();

    // Another catalog in the same place (rebuilt, or replaced) never matches the old snapshot's generation.
    rmSync(file);
    rmSync(`${file}-wal`, { force: true });
    rmSync(`${file}-shm`, { force: true });
    const again = Catalog.open(file);
    expect(again.loadKnownBlobIds().set.size).toBe(0);
    again.close();
  });
});

describe('jobs', () => {
  it('record what started them; jobs from before migration 4 have no trigger', () => {
    const file = path.join(dir, 'jobs.db');
    const db = catalogAtSchema(file, 3);
    db.prepare("INSERT INTO jobs(kind, grp, state, started) VALUES ('backup', 'g', 'completed', 1)").run();
    db.close();

    const c = Catalog.open(file);
    const scheduled = c.createJob('backup', 'g', 2, { trigger: 'scheduled' });
    const adHoc = c.createJob('check', null, 3);
    const skipped = c.recordSkippedJob('prune', null, 4, 'refused by the gate', 'scheduled');
    expect(c.jobs().map((j) => [j.kind, j.trigger])).toEqual([
      ['prune', 'scheduled'],
      ['check', 'ad hoc'],
      ['backup', 'scheduled'],
      ['backup', null],
    ]);
    expect(c.job(scheduled)?.pid).toBe(process.pid);
    expect(c.job(adHoc)?.state).toBe('running');
    expect(c.job(skipped)).toMatchObject({ state: 'skipped', error: 'refused by the gate' });
    c.close();
  });
});
