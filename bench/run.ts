// `npm run bench`: strata against restic and borg on the same deterministic corpus.
//
// For each run (default 3) and each tool in turn (strata, restic, borg, strata, restic, borg, …), on a
// fresh copy of the corpus at the same path and into a fresh repository:
//   init → initial backup → unchanged re-backup → mutate (~2%) → incremental backup → full restore
//   (verified by tree hash against the source) → check --read-data
// with the page cache dropped before every measured phase (when permitted). Prints the medians and
// strata's ratio to each peer; `--markdown FILE` writes the same as markdown for bench/RESULTS.md.
//
//   node dist/bench/run.js [--size 2G] [--runs 3] [--only strata,restic] [--seed 1] [--dir .bench]
//                          [--json] [--markdown FILE] [--keep] [--timeout SECONDS]
//   node dist/bench/run.js cloud …     (the cloud bench, bench/cloud.ts)
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { runCloudBench } from './cloud.js';
import { CORPUS_VERSION, formatBytes, generateCorpus, mutate, parseSize, type CorpusStats, type MutateStats } from './corpus.js';
import { BorgDriver, locateRestored, ResticDriver, StrataDriver, TOOL_NAMES, type Driver, type Session, type ToolInfo, type ToolName, stopBenchVault } from './drivers.js';
import { backgroundCores, cpuProbe, dropCaches, duBytes, haveGnuTime, runQuiet, type Measured } from './measure.js';
import { BACKGROUND_WARN, PROBE_WARN, buildTable, evaluateTargets, maxBackground, medians, probeSpread, renderMarkdown, renderTargets, renderText, type ReportMeta, type RunMetrics } from './report.js';
import { hashTree, walkTree, type TreeHash } from './treehash.js';

export interface BenchOptions {
  dir: string;
  sizeBytes: number;
  seed: number;
  runs: number;
  only: ToolName[];
  json: boolean;
  markdown: string | null;
  keep: boolean;
  timeoutSeconds: number;
  mutateFraction: number;
  /** Drop the page cache before each measured phase (when permitted). */
  dropCaches: boolean;
}

const USAGE = `usage: npm run bench -- [cloud] [options]
  --size SIZE        corpus size (default 2G; K/M/G/T, binary)
  --runs N           runs per tool (default 3), alternating the tools
  --only LIST        tools to run, comma-separated from strata,restic,borg (default: all installed)
  --seed N           corpus seed (default 1); the mutation uses seed N+1
  --dir DIR          bench work directory (default .bench/ in the repository)
  --json             print the results as JSON on stdout (progress still goes to stderr)
  --markdown FILE    also write the results as markdown (for bench/RESULTS.md)
  --keep             keep repositories and the work copy after the runs
  --timeout SECONDS  limit for any one measured phase (default: 600 s, or more for big corpora)
  --no-drop-caches   measure with a warm page cache (by default it is dropped before each phase, as root)`;

/** The repository root: the nearest ancestor with strata's package.json (works from bench/ and dist/bench/). */
export function findRepoRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let d = from; ; d = dirname(d)) {
    const pj = join(d, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'strata') return d;
      } catch {
        /* keep looking */
      }
    }
    if (dirname(d) === d) return resolve(from, '..');
  }
}

export function parseOptions(argv: string[], repoRoot: string): { command: 'bench' | 'cloud' | 'help'; opts: BenchOptions } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      size: { type: 'string', default: '2G' },
      runs: { type: 'string', default: '3' },
      only: { type: 'string' },
      seed: { type: 'string', default: '1' },
      dir: { type: 'string' },
      json: { type: 'boolean', default: false },
      markdown: { type: 'string' },
      keep: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      fraction: { type: 'string', default: '0.02' },
      'no-drop-caches': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const sizeBytes = parseSize(values.size ?? '2G');
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`--runs must be a positive integer: ${values.runs}`);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new UsageError(`--seed must be an integer: ${values.seed}`);
  const only = values.only ? values.only.split(',').map((s) => s.trim()).filter(Boolean) : [...TOOL_NAMES];
  for (const t of only) if (!(TOOL_NAMES as readonly string[]).includes(t)) throw new UsageError(`--only: unknown tool ${t} (strata, restic, borg)`);
  const timeoutSeconds = values.timeout ? Number(values.timeout) : Math.max(600, Math.ceil(sizeBytes / 5e6));
  if (!(timeoutSeconds > 0)) throw new UsageError(`--timeout must be positive: ${values.timeout}`);
  const cmd = positionals[0];
  if (cmd !== undefined && cmd !== 'cloud') throw new UsageError(`unknown sub-bench: ${cmd}`);
  if (positionals.length > 1) throw new UsageError(`unexpected arguments: ${positionals.slice(1).join(' ')}`);
  return {
    command: values.help ? 'help' : cmd === 'cloud' ? 'cloud' : 'bench',
    opts: {
      dir: resolve(values.dir ?? join(repoRoot, '.bench')),
      sizeBytes,
      seed,
      runs,
      only: TOOL_NAMES.filter((t) => only.includes(t)),
      json: values.json ?? false,
      markdown: values.markdown ? resolve(values.markdown) : null,
      keep: values.keep ?? false,
      timeoutSeconds,
      mutateFraction: Number(values.fraction),
      dropCaches: !values['no-drop-caches'],
    },
  };
}

export class UsageError extends Error {}

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

const MB = 1e6;
const toMiB = (kib: number | null): number | null => (kib == null ? null : kib / 1024);

interface CorpusInfo {
  dir: string;
  stats: CorpusStats;
  tree: TreeHash;
}

/** The corpus for (size, seed), generated once and reused while its stamp matches. */
async function ensureCorpus(opts: BenchOptions): Promise<CorpusInfo> {
  const name = `corpus-${opts.sizeBytes}-s${opts.seed}`;
  const dir = join(opts.dir, name);
  const stampFile = join(opts.dir, `${name}.json`);
  try {
    const stamp = JSON.parse(await readFile(stampFile, 'utf8')) as { version: number; stats: CorpusStats; tree: TreeHash };
    if (stamp.version === CORPUS_VERSION && existsSync(dir)) {
      // A cheap consistency check (the full hash is taken of every work copy anyway).
      const entries = await walkTree(dir);
      const files = entries.filter((e) => e.type === 'file');
      if (files.length === stamp.tree.files && files.reduce((s, e) => s + e.size, 0) === stamp.tree.bytes) {
        log(`reusing corpus ${dir} (${stamp.stats.files} files, ${formatBytes(stamp.stats.bytes)})`);
        return { dir, stats: stamp.stats, tree: stamp.tree };
      }
    }
  } catch {
    /* no usable stamp */
  }
  await rm(stampFile, { force: true });
  await rm(dir, { recursive: true, force: true });
  log(`generating a ${formatBytes(opts.sizeBytes)} corpus (seed ${opts.seed}) in ${dir}`);
  const t0 = performance.now();
  const stats = await generateCorpus(dir, { sizeBytes: opts.sizeBytes, seed: opts.seed });
  const tree = await hashTree(dir);
  log(`corpus: ${stats.files} files, ${formatBytes(stats.bytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await writeFile(stampFile, JSON.stringify({ version: CORPUS_VERSION, stats, tree }, null, 2));
  return { dir, stats, tree };
}

interface Shared {
  opts: BenchOptions;
  corpus: CorpusInfo;
  work: string;
  cacheDrop: boolean;
  /** Hash of the work copy after mutation: the same in every run (mutation is deterministic). */
  mutated: TreeHash | null;
  mutateStats: MutateStats | null;
}

async function freshCopy(src: string, dst: string): Promise<void> {
  await rm(dst, { recursive: true, force: true });
  await mkdir(dirname(dst), { recursive: true });
  const r = await runQuiet('cp', ['-a', src, dst]);
  if (r.code !== 0) throw new Error(`cp -a ${src} ${dst} failed: ${r.stderr.trim()}`);
}

async function phase(sh: Shared, m: RunMetrics, name: string, fn: () => Promise<Measured>): Promise<Measured> {
  if (sh.cacheDrop) await dropCaches();
  (m.probe ??= {})[name] = cpuProbe();
  const r = await fn();
  const rss = toMiB(r.peakRssKiB);
  m.rss[name] = rss;
  (m.cpu ??= {})[name] = r.cpuSeconds;
  (m.background ??= {})[name] = backgroundCores(r);
  if (rss != null) m.rssMaxMiB = Math.max(m.rssMaxMiB ?? 0, rss);
  return r;
}

async function oneRun(sh: Shared, driver: Driver, run: number): Promise<RunMetrics> {
  const { opts, corpus, work } = sh;
  const m: RunMetrics = { tool: driver.name, run, rss: {} };
  const runDir = join(opts.dir, 'runs', driver.name);
  const restoreDir = join(opts.dir, 'restore');
  const tag = `run ${run}/${opts.runs} ${driver.name}`;
  try {
    await freshCopy(corpus.dir, work);
    await rm(runDir, { recursive: true, force: true });
    await rm(restoreDir, { recursive: true, force: true });
    await mkdir(runDir, { recursive: true });
    const s: Session = driver.session(runDir);
    await s.init();

    const b1 = await phase(sh, m, 'initial backup', () => s.backup(work));
    m.initialSeconds = b1.seconds;
    m.initialMBps = corpus.tree.bytes / MB / b1.seconds;
    m.rssBackupMiB = toMiB(b1.peakRssKiB) ?? undefined;
    m.initialCpuSeconds = b1.cpuSeconds ?? undefined;
    m.storedBytes = await duBytes(s.repoDir);
    log(`${tag}: initial backup ${b1.seconds.toFixed(2)} s (${m.initialMBps.toFixed(0)} MB/s, RSS ${m.rssBackupMiB?.toFixed(0) ?? '?'} MiB, CPU ${b1.cpuSeconds?.toFixed(1) ?? '?'} s, background ${backgroundCores(b1)?.toFixed(2) ?? '?'} cores, speed probe ${m.probe?.['initial backup']?.toFixed(0) ?? '?'} MB/s), stored ${formatBytes(m.storedBytes)}`);

    const b2 = await phase(sh, m, 'unchanged re-backup', () => s.backup(work));
    m.unchangedSeconds = b2.seconds;
    log(`${tag}: unchanged re-backup ${b2.seconds.toFixed(2)} s`);

    const ms = await mutate(work, { seed: opts.seed + 1, fraction: opts.mutateFraction });
    const mutated = await hashTree(work);
    if (!sh.mutated) {
      sh.mutated = mutated;
      sh.mutateStats = ms;
    } else if (sh.mutated.hash !== mutated.hash) {
      throw new Error('the mutated work copy differs from the first run’s: the corpus or mutate is not deterministic');
    }
    const b3 = await phase(sh, m, 'incremental backup', () => s.backup(work));
    m.incrementalSeconds = b3.seconds;
    m.storedBytesFinal = await duBytes(s.repoDir);
    log(`${tag}: incremental backup ${b3.seconds.toFixed(2)} s (${formatBytes(ms.changedBytes)} changed)`);

    await mkdir(restoreDir, { recursive: true });
    const r = await phase(sh, m, 'restore', () => s.restore(restoreDir));
    m.restoreSeconds = r.seconds;
    m.restoreMBps = mutated.bytes / MB / r.seconds;
    const root = await locateRestored(restoreDir, work);
    const got = await hashTree(root);
    m.restoreVerified = got.hash === mutated.hash;
    if (!m.restoreVerified) {
      m.verifyError = `restored tree at ${root} differs from the source: ${got.files} files / ${got.dirs} dirs / ${got.bytes} bytes, expected ${mutated.files} / ${mutated.dirs} / ${mutated.bytes}`;
      log(`${tag}: RESTORE VERIFICATION FAILED: ${m.verifyError}`);
    }
    log(`${tag}: restore ${r.seconds.toFixed(2)} s (${m.restoreMBps.toFixed(0)} MB/s), verified: ${m.restoreVerified ? 'yes' : 'NO'}`);
    await rm(restoreDir, { recursive: true, force: true });

    const c = await phase(sh, m, 'check --read-data', () => s.check());
    m.checkSeconds = c.seconds;
    m.checkMBps = corpus.tree.bytes / MB / c.seconds;
    log(`${tag}: check --read-data ${c.seconds.toFixed(2)} s (${m.checkMBps.toFixed(0)} MB/s)`);
  } catch (e) {
    m.error = e instanceof Error ? e.message : String(e);
    log(`${tag}: FAILED: ${m.error.split('\n').slice(0, 8).join('\n    ')}`);
  } finally {
    if (!opts.keep) {
      await rm(runDir, { recursive: true, force: true });
      await rm(restoreDir, { recursive: true, force: true });
    }
  }
  return m;
}

async function machineInfo(dir: string): Promise<ReportMeta['machine']> {
  let cpu = 'unknown';
  try {
    cpu = /^model name\s*:\s*(.*)$/m.exec(await readFile('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    /* not Linux */
  }
  const df = await runQuiet('df', ['--output=fstype', dir]);
  const fsType = df.code === 0 ? (df.stdout.trim().split('\n').pop() ?? '').trim() || null : null;
  return { cpu, cores: availableParallelism(), memoryBytes: totalmem(), kernel: release(), filesystem: fsType };
}

export interface BenchResult {
  meta: ReportMeta;
  tools: ToolName[];
  probes: ToolInfo[];
  runs: RunMetrics[];
  medians: ReturnType<typeof medians>;
  targets: ReturnType<typeof evaluateTargets>;
}

export async function runBench(opts: BenchOptions, repoRoot: string): Promise<BenchResult> {
  await mkdir(opts.dir, { recursive: true });
  const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version?: string };
  const dopts = { timeoutSeconds: opts.timeoutSeconds };
  const all: Driver[] = [new StrataDriver({ ...dopts, repoRoot, version: pkg.version ?? null }), new ResticDriver(dopts), new BorgDriver(dopts)];
  const drivers = all.filter((d) => opts.only.includes(d.name));
  const probes = await Promise.all(drivers.map((d) => d.probe()));
  for (const p of probes) log(`${p.name}: ${p.available ? `version ${p.version ?? '?'}` : `not measured: ${p.reason}`}`);
  const active = drivers.filter((_, i) => probes[i]?.available);
  // strata always has a column (n/a when it cannot run yet); peers only when installed.
  const tools = drivers.map((d) => d.name).filter((n) => n === 'strata' || active.some((d) => d.name === n));

  const cacheDrop = opts.dropCaches && (await dropCaches());
  const cacheDropNote = opts.dropCaches ? 'not permitted: run as root to enable' : '--no-drop-caches';
  log(`page cache drop between phases: ${cacheDrop ? 'yes' : `no (${cacheDropNote})`}`);
  if (!haveGnuTime()) log('note: /usr/bin/time is missing; peak RSS comes from polling /proc only (apt-get install time)');

  const corpus = await ensureCorpus(opts);
  const sh: Shared = { opts, corpus, work: join(opts.dir, 'work', 'corpus'), cacheDrop, mutated: null, mutateStats: null };
  const runs: RunMetrics[] = [];
  for (let run = 1; run <= opts.runs; run++) {
    for (const d of active) runs.push(await oneRun(sh, d, run));
  }
  if (!opts.keep) {
    await rm(join(opts.dir, 'work'), { recursive: true, force: true });
    await rm(join(opts.dir, 'runs'), { recursive: true, force: true });
  }

  const med = medians(runs, tools);
  const ms = sh.mutateStats;
  const meta: ReportMeta = {
    date: new Date().toISOString(),
    machine: await machineInfo(opts.dir),
    versions: {
      node: process.version,
      strata: pkg.version ?? null,
      ...(opts.only.includes('restic') ? { restic: probes.find((p) => p.name === 'restic')?.version ?? null } : {}),
      ...(opts.only.includes('borg') ? { borg: probes.find((p) => p.name === 'borg')?.version ?? null } : {}),
    },
    corpus: { ...corpus.stats },
    mutate: ms
      ? {
          seed: opts.seed + 1,
          fraction: opts.mutateFraction,
          changedBytes: ms.changedBytes,
          bytesBefore: ms.bytesBefore,
          files: { appended: ms.appended.files, 'edited in place': ms.overwritten.files, 'with inserts': ms.inserted.files, created: ms.created.files, deleted: ms.deleted.files },
        }
      : null,
    runs: opts.runs,
    cacheDrop,
    cacheDropNote,
    settings: [
      'restic: repository v2, `--compression auto`; borg: `--encryption repokey-blake2 --compression lz4`; strata: its defaults (LZ4 where it pays, AES-256-GCM)',
      'each tool-run: fresh copy of the corpus at the same path, fresh repository and caches; tools alternate (strata, restic, borg, strata, …)',
      `peak RSS: max of GNU time %M (largest process) and the sum of VmRSS over the process tree polled every 100 ms${haveGnuTime() ? '' : ' (GNU time missing: polling only)'}`,
    ],
    unavailable: probes.filter((p) => !p.available).map((p) => ({ tool: p.name, reason: p.reason ?? 'unavailable' })),
  };
  return { meta, tools, probes, runs, medians: med, targets: evaluateTargets(med) };
}

export async function main(argv: string[]): Promise<number> {
  const repoRoot = findRepoRoot();
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(argv, repoRoot);
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    console.error(USAGE);
    return 2;
  }
  const { command, opts } = parsed;
  if (command === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (command === 'cloud') {
    return runCloudBench({ dir: opts.dir, sizeBytes: opts.sizeBytes, seed: opts.seed, runs: opts.runs, json: opts.json, markdown: opts.markdown });
  }
  let res: BenchResult;
  try {
    res = await runBench(opts, repoRoot);
  } finally {
    await stopBenchVault();
  }
  const table = buildTable(res.medians, res.tools, res.runs);
  const md = renderMarkdown(res.meta, table, res.targets, res.runs);
  if (opts.markdown) {
    await writeFile(opts.markdown, md);
    log(`markdown written to ${opts.markdown}`);
  }
  if (opts.json) {
    console.log(JSON.stringify({ ...res, table }, null, 2));
  } else {
    const m = res.meta;
    console.log('');
    console.log(`strata bench — ${formatBytes(m.corpus.sizeRequested)} corpus (seed ${m.corpus.seed}): ${m.corpus.files} files, ${m.corpus.bytes.toLocaleString('en-US')} bytes; ${m.runs} run(s) per tool`);
    console.log(`${m.machine.cpu}, ${m.machine.cores} cores, ${(m.machine.memoryBytes / 2 ** 30).toFixed(1)} GiB; ${Object.entries(m.versions).map(([k, v]) => `${k} ${v ?? 'n/a'}`).join(', ')}`);
    console.log(`page cache dropped before each phase: ${m.cacheDrop ? 'yes' : `NO (${m.cacheDropNote})`}`);
    for (const u of m.unavailable) console.log(`${u.tool}: n/a (${u.reason})`);
    console.log('');
    console.log(renderText(table));
    console.log('');
    console.log('ratios are strata ÷ peer (MB/s: higher is better; s, bytes, MiB: lower is better)');
    console.log(renderTargets(res.targets).join('\n'));
    const probe = probeSpread(res.runs);
    if (probe && probe.spread > PROBE_WARN) {
      console.log(`warning: the machine's speed probe moved ${(100 * probe.spread).toFixed(0)}% (${probe.min.toFixed(0)}–${probe.max.toFixed(0)} MB/s) during this invocation: compare the per-run figures with their probe`);
    }
    for (const r of res.runs) {
      const bg = maxBackground(r);
      if (bg != null && bg > BACKGROUND_WARN) console.log(`warning: ${r.tool} run ${r.run}: other processes used up to ${bg.toFixed(2)} cores during a measured phase: its figures are disturbed`);
      if (r.error) console.log(`${r.tool} run ${r.run} failed: ${r.error.split('\n')[0]}`);
      if (r.restoreVerified === false) console.log(`${r.tool} run ${r.run}: RESTORE VERIFICATION FAILED: ${r.verifyError}`);
    }
  }
  // A failed verification or a failed phase makes the bench fail: its figures cannot be trusted.
  return res.runs.some((r) => r.error || r.restoreVerified === false) ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? (err.stack ?? err.message) : err);
      process.exit(1);
    },
  );
}
