// SQLite data sources: a consistent copy through SQLite's online backup API, never a torn copy of a
// live file. The copy is made in the scratch area and backed up from there.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { StrataError } from '../errors.js';

export async function snapshotSqlite(dbFile: string, scratch: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = path.join(scratch, `sqlite-${randomBytes(6).toString('hex')}`);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const dest = path.join(dir, path.basename(dbFile));
  let db: Database.Database | null = null;
  try {
    db = new Database(dbFile, { readonly: true, fileMustExist: true });
    await db.backup(dest);
    const st = await fs.stat(dbFile);
    await fs.chmod(dest, st.mode & 0o7777);
    await fs.utimes(dest, st.atime, st.mtime);
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw new StrataError('STRATA_SQLITE_BACKUP', `cannot back up SQLite database ${dbFile}: ${(err as Error).message}`, { kind: 'failed', cause: err });
  } finally {
    db?.close();
  }
  return { dir, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}
