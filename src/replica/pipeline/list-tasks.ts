// The work of a lister thread (list-worker.ts): directory listings for the backup walk, and the count
// of files and bytes behind a first backup's ETA. Only file-system metadata: no keys, and none of the
// pipeline's heavier modules, so the thread starts in a few tens of ms.
import type { Stats } from 'node:fs';
import { DirLister } from './dir-lister.js';
import { excluder } from './exclude.js';
import { ENTRY_KINDS, packListing, STAT_SLOTS, WALK_AHEAD_ENTRIES, type WalkBatch, type WalkCredit } from './listing.js';
import type { TaskContext, WorkerHandlers } from './protocol.js';

export interface ListerInit {
  /** The data source's exclusion patterns (exclude.ts), applied to every listing. */
  exclude: string[];
  /** Entries a walk may run ahead of its consumer (default `WALK_AHEAD_ENTRIES`); the consumer must credit by the same bound. */
  aheadEntries?: number;
}

export interface WalkTreeTask {
  /** Absolute path of the source root. */
  root: string;
}

export interface CountTreeTask {
  root: string;
}

/** A batch goes out at this many entries, or after `BATCH_MS`, whichever comes first. */
const BATCH_ENTRIES = 512;
const BATCH_MS = 2;

export function createHandlers(init: ListerInit): WorkerHandlers {
  const excluded = excluder(init.exclude);
  const keep = (rel: string) => (excluded ? (name: string) => !excluded(rel ? `${rel}/${name}` : name) : undefined);
  const flow = new Flow(init.aheadEntries ?? WALK_AHEAD_ENTRIES);
  return {
    async run(kind, task, ctx) {
      switch (kind) {
        case 'walk-tree':
          return walkTree(task as WalkTreeTask, keep, ctx, flow);
        case 'count-tree':
          return countTree((task as CountTreeTask).root, keep);
        default:
          throw new Error(`unknown lister task ${JSON.stringify(kind)}`);
      }
    },
    control(data) {
      const c = data as WalkCredit;
      if ('consumed' in c) flow.give(c.consumed);
      else flow.setLimit(c.aheadEntries);
    },
  };
}

/** How far the walk may run ahead: entries sent and not yet consumed, bounded. */
class Flow {
  #limit: number;
  #outstanding = 0;
  #wake: (() => void) | null = null;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get blocked(): boolean {
    return this.#outstanding >= this.#limit;
  }

  setLimit(limit: number): void {
    this.#limit = limit;
    this.give(0);
  }

  spend(n: number): void {
    this.#outstanding += n;
  }

  give(n: number): void {
    this.#outstanding -= n;
    if (!this.blocked && this.#wake) {
      const wake = this.#wake;
      this.#wake = null;
      wake();
    }
  }

  /** Resolves once the consumer has caught up below the limit. */
  async unblocked(): Promise<void> {
    while (this.blocked) await new Promise<void>((resolve) => (this.#wake = resolve));
  }
}

/**
 * Lists the whole tree under `root` in the order the backup walk visits it (pre-order, depth first,
 * subdirectories in the sorted order of their names), and sends the listings as parts, batched. The
 * walk decides what to enter from the same packed kinds the consumer sees, so both agree on the order
 * without asking each other. It runs at most `WALK_AHEAD_ENTRIES` entries ahead of the consumer.
 *
 * (One thread per walk: two, each listing half the directories, took longer here, since each had to
 * read every directory to find its half; the lstat calls are most of the work and the disk's waits.)
 */
async function walkTree(task: WalkTreeTask, keep: (rel: string) => ((name: string) => boolean) | undefined, ctx: TaskContext, flow: Flow): Promise<null> {
  const lister = new DirLister();
  let batch: WalkBatch['listings'] = [];
  let batchEntries = 0;
  let batchSince = performance.now();
  const flush = () => {
    if (batch.length === 0) return;
    const out: WalkBatch = { listings: batch };
    ctx.post(out, batch.map((b) => b.listing.stats.buffer as ArrayBuffer));
    batch = [];
    batchEntries = 0;
    batchSince = performance.now();
  };
  const walk = async (abs: string, rel: string): Promise<void> => {
    const listing = packListing(await lister.list(abs, keep(rel)));
    // (Read before the listing is sent: sending transfers its stats away from this thread.)
    const subdirs = listing.names.filter((_, i) => listing.stats[i * STAT_SLOTS] === DIR_KIND);
    batch.push({ rel, listing });
    batchEntries += listing.names.length + 1;
    flow.spend(listing.names.length + 1);
    if (batchEntries >= BATCH_ENTRIES || performance.now() - batchSince >= BATCH_MS || flow.blocked) flush();
    await flow.unblocked();
    const prefix = abs.endsWith('/') ? abs : `${abs}/`;
    for (const name of subdirs) await walk(prefix + name, rel ? `${rel}/${name}` : name);
  };
  await walk(task.root, '');
  flush();
  return null;
}

const DIR_KIND = BigInt(ENTRY_KINDS.indexOf('dir'));

/** Files and their bytes under `root` (exclusions applied as the walk does); unreadable parts are skipped. */
async function countTree(root: string, keep: (rel: string) => ((name: string) => boolean) | undefined): Promise<{ files: number; bytes: number }> {
  const lister = new DirLister<Stats>({ bigint: false });
  let files = 0;
  let bytes = 0;
  const walk = async (abs: string, rel: string): Promise<void> => {
    const listing = await lister.list(abs, keep(rel));
    for (let i = 0; i < listing.names.length; i++) {
      const st = listing.stats[i];
      if (!st) continue;
      const name = listing.names[i]!;
      if (st.isDirectory()) await walk(`${abs}/${name}`, rel ? `${rel}/${name}` : name);
      else if (st.isFile()) {
        files++;
        bytes += st.size;
      }
    }
  };
  await walk(root, '');
  return { files, bytes };
}
