// Reading a file through once, in the background, so that its pages are in the OS page cache before
// something reads it at random. The catalog is SQLite: the walk of a backup asks it for each
// directory's file-metadata cache, one query per directory, and on a cold cache every query waits on
// the disk for a few scattered pages, on the main thread.
import { open } from 'node:fs/promises';

const PIECE_BYTES = 1024 * 1024;

/**
 * Reads up to `maxBytes` of `file` from its start, a piece at a time, into one reused buffer (nothing is
 * kept). Stops early once `signal` is aborted. Never rejects: a file that cannot be read is simply
 * not read ahead, and whoever needs it reports the problem.
 */
export async function readAhead(file: string, maxBytes: number, signal?: AbortSignal): Promise<void> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return;
  }
  try {
    const buf = Buffer.allocUnsafeSlow(PIECE_BYTES);
    for (let at = 0; at < maxBytes && !signal?.aborted; ) {
      const { bytesRead } = await handle.read(buf, 0, Math.min(PIECE_BYTES, maxBytes - at), at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
  } catch {
    // Only a hint: the reader that needs the file reports what is wrong with it.
  } finally {
    await handle.close().catch(() => {});
  }
}
