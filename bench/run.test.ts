import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launcher, locateRestored, parseJsonOutput, parseShebang } from './drivers.js';
import { backgroundCores, cpuProbe, measure } from './measure.js';
import {
  buildTable,
  evaluateTargets,
  maxBackground,
  median,
  medians,
  probeRange,
  probeSpread,
  ratio,
  renderMarkdown,
  renderMarkdownTable,
  renderText,
  type ReportMeta,
  type RunMetrics,
} from './report.js';
import { findRepoRoot, parseOptions } from './run.js';

function run(tool: RunMetrics['tool'], n: number, over: Partial<RunMetrics>): RunMetrics {
  return { tool, run: n, rss: {}, ...over };
}

describe('median', () => {
  it('takes the middle value, or the mean of the middle two', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNull();
    expect(median([NaN, 5])).toBe(5);
  });
});

describe('medians, ratios and targets', () => {
  const runs: RunMetrics[] = [
    run('strata', 1, { initialMBps: 600, unchangedSeconds: 0.4, restoreMBps: 500, restoreVerified: true, storedBytes: 90, rssBackupMiB: 200 }),
    run('strata', 2, { initialMBps: 620, unchangedSeconds: 0.5, restoreMBps: 9999, restoreVerified: false, storedBytes: 90, rssBackupMiB: 210 }),
    run('strata', 3, { initialMBps: 640, unchangedSeconds: 0.6, restoreMBps: 520, restoreVerified: true, storedBytes: 90, rssBackupMiB: 220 }),
    run('restic', 1, { initialMBps: 150, unchangedSeconds: 2, restoreMBps: 200, restoreVerified: true, storedBytes: 80 }),
    run('restic', 2, { error: 'restic backup: exit code 1' }),
    run('borg', 1, { initialMBps: 200, storedBytes: 100 }),
  ];
  const tools = ['strata', 'restic', 'borg'] as const;
  const med = medians(runs, tools);

  it('ignores failed runs and restores that did not verify', () => {
    expect(med.strata?.initialMBps).toBe(620);
    expect(med.strata?.restoreMBps).toBe(510);
    expect(med.restic?.initialMBps).toBe(150);
    expect(med.borg?.unchangedSeconds).toBeNull();
  });

  it('gives strata ÷ peer', () => {
    expect(ratio(med, 'initialMBps', 'restic')).toBeCloseTo(620 / 150);
    expect(ratio(med, 'storedBytes', 'borg')).toBeCloseTo(0.9);
    expect(ratio(med, 'unchangedSeconds', 'borg')).toBeNull();
  });

  it('evaluates the issue’s targets in the right direction', () => {
    const t = evaluateTargets(med);
    const get = (text: string): { met: boolean | null } => t.find((x) => x.text.startsWith(text)) ?? { met: null };
    expect(get('initial backup ≥ 3× restic').met).toBe(true);
    expect(get('initial backup ≥ 2.5× borg').met).toBe(true); // 3.1×
    expect(get('unchanged re-backup').met).toBe(true); // 0.25×
    expect(get('full restore').met).toBe(true); // 2.55×
    expect(get('check --read-data').met).toBeNull();
    expect(get('stored size').met).toBe(true);
    expect(get('peak RSS').met).toBe(true);
  });

  it('renders a table with n/a for what was not measured and flags failed verification', () => {
    const table = buildTable(med, tools, runs);
    expect(table.header).toEqual(['metric (median)', 'strata', 'restic', 'borg', 'strata ÷ restic', 'strata ÷ borg', 'target']);
    const restore = table.rows.find((r) => r[0]?.startsWith('full restore'));
    expect(restore?.[1]).toContain('VERIFY FAILED');
    const check = table.rows.find((r) => r[0]?.startsWith('check'));
    expect(check?.slice(1, 6)).toEqual(['n/a', 'n/a', 'n/a', 'n/a', 'n/a']);
    const md = renderMarkdownTable(table);
    expect(md.split('\n')).toHaveLength(2 + table.rows.length);
    expect(renderText(table).split('\n')).toHaveLength(2 + table.rows.length);
  });
});

describe('background load', () => {
  it('is the machine’s busy time not spent by the tool, per second of wall time', () => {
    const m = { code: 0, signal: null, seconds: 2, peakRssKiB: 1, cpuSeconds: 1, machineBusySeconds: 3, stdout: '', stderr: '' };
    expect(backgroundCores(m)).toBe(1);
    expect(backgroundCores({ ...m, machineBusySeconds: 0.5 })).toBe(0);
    expect(backgroundCores({ ...m, cpuSeconds: null })).toBeNull();
    expect(maxBackground(run('borg', 1, { background: { a: 0.1, b: 0.4, c: null } }))).toBe(0.4);
    expect(maxBackground(run('borg', 1, {}))).toBeNull();
  });
});

describe('machine speed probe', () => {
  it('measures a positive rate, and the report gives each run its range and the invocation its spread', () => {
    const rate = cpuProbe();
    expect(Number.isFinite(rate) && rate > 0).toBe(true);
    const steady = [run('strata', 1, { probe: { a: 1000, b: 1040 } }), run('restic', 1, { probe: { a: 1010, b: 990 } })];
    expect(probeRange(steady[0]!)).toEqual({ min: 1000, max: 1040 });
    expect(probeRange(run('borg', 1, {}))).toBeNull();
    const s = probeSpread(steady)!;
    expect([s.min, s.max, s.median]).toEqual([990, 1040, 1005]);
    expect(s.spread).toBeCloseTo(50 / 1005);
    expect(probeSpread([run('borg', 1, {})])).toBeNull();

    const meta: ReportMeta = {
      date: '2026-12-07',
      machine: { cpu: 'test cpu', cores: 2, memoryBytes: 2 ** 30, kernel: '6', filesystem: null },
      versions: { node: 'v20' },
      corpus: { sizeRequested: 1024, seed: 1, files: 1, dirs: 1, bytes: 1024, byClass: {}, duplicates: { files: 0, bytes: 0, exact: 0, edited: 0 } },
      mutate: null,
      runs: 1,
      cacheDrop: true,
      cacheDropNote: '',
      settings: [],
      unavailable: [],
    };
    const report = (runs: RunMetrics[]) => renderMarkdown(meta, buildTable(medians(runs, ['strata', 'restic']), ['strata', 'restic'], runs), [], runs);
    const quiet = report(steady);
    expect(quiet).toContain('990–1040 MB/s, median 1005, a spread of 5%');
    expect(quiet).not.toContain("the machine's speed moved");
    expect(quiet).toMatch(/\| strata \| 1 \|.*\| 1000–1040 \|/);
    const slowed = report([...steady, run('strata', 2, { probe: { a: 700 } })]);
    expect(slowed).toContain("**Warning:** the machine's speed moved by more than 15%");
  });
});

describe('parseOptions', () => {
  const root = '/repo';
  it('has the documented defaults', () => {
    const { command, opts } = parseOptions([], root);
    expect(command).toBe('bench');
    expect(opts.sizeBytes).toBe(2 * 1024 ** 3);
    expect(opts.runs).toBe(3);
    expect(opts.only).toEqual(['strata', 'restic', 'borg']);
    expect(opts.dir).toBe('/repo/.bench');
    expect(opts.json).toBe(false);
    expect(opts.markdown).toBeNull();
  });
  it('reads --size, --runs, --only, --json and the cloud sub-bench', () => {
    const { command, opts } = parseOptions(['cloud', '--size', '8G', '--runs', '1', '--only', 'restic,strata', '--json'], root);
    expect(command).toBe('cloud');
    expect(opts.sizeBytes).toBe(8 * 1024 ** 3);
    expect(opts.runs).toBe(1);
    expect(opts.only).toEqual(['strata', 'restic']);
    expect(opts.json).toBe(true);
  });
  it('rejects bad input', () => {
    expect(() => parseOptions(['--only', 'tar'], root)).toThrow(/unknown tool/);
    expect(() => parseOptions(['--runs', '0'], root)).toThrow(/runs/);
    expect(() => parseOptions(['speed'], root)).toThrow(/sub-bench/);
  });
  it('finds the repository root from bench/', () => {
    expect(findRepoRoot()).toMatch(/[^/]$/);
  });
});

describe('parseJsonOutput', () => {
  it('reads the whole of stdout, or its last JSON line', () => {
    expect(parseJsonOutput('{"recoveryPoint":{"id":"a"}}\n')).toEqual({ recoveryPoint: { id: 'a' } });
    expect(parseJsonOutput('progress 50%\n{"ok":true}\n')).toEqual({ ok: true });
    expect(parseJsonOutput('no json')).toBeNull();
  });
});

describe('measure and locateRestored', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-bench-run-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reports the exit code, output and a peak RSS', async () => {
    const ok = await measure('sh', ['-c', 'echo hello; exit 0']);
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim()).toBe('hello');
    expect(ok.peakRssKiB).toBeGreaterThan(0);
    expect(ok.machineBusySeconds).not.toBeNull();
    const bad = await measure('sh', ['-c', 'echo oops >&2; exit 3']);
    expect(bad.code).toBe(3);
    expect(bad.stderr.trim()).toBe('oops');
  });

  it('kills the whole process tree at the time limit', async () => {
    const pidFile = join(dir, 'pid');
    const m = await measure('sh', ['-c', `sleep 60 & echo $! > ${pidFile}; wait`], { timeoutSeconds: 0.5 });
    expect(m.code).toBeNull();
    expect(m.signal).toBe('SIGKILL');
    const pid = Number(await readFile(pidFile, 'utf8'));
    // Gone, or a zombie waiting for whoever adopted it to reap it.
    const state = await readFile(`/proc/${pid}/stat`, 'utf8').then((s) => s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3), () => 'gone');
    expect(['gone', 'Z', 'X']).toContain(state);
  });

  it('finds the restored copy where restic and borg put it, or under the base name', async () => {
    const src = join(dir, 'src', 'corpus');
    await mkdir(join(src, 'logs'), { recursive: true });
    await writeFile(join(src, 'a.txt'), 'a');
    const t1 = join(dir, 't1');
    await mkdir(join(t1, src, 'logs'), { recursive: true });
    await writeFile(join(t1, src, 'a.txt'), 'a');
    expect(await locateRestored(t1, src)).toBe(join(t1, src));
    const t2 = join(dir, 't2');
    await mkdir(join(t2, 'corpus', 'logs'), { recursive: true });
    await writeFile(join(t2, 'corpus', 'a.txt'), 'a');
    expect(await locateRestored(t2, src)).toBe(join(t2, 'corpus'));
    const t3 = join(dir, 't3');
    await mkdir(join(t3, 'logs'), { recursive: true });
    await writeFile(join(t3, 'a.txt'), 'a');
    expect(await locateRestored(t3, src)).toBe(t3);
  });
});

describe('the strata launcher', () => {
  it('reads the environment and node options of the bin #! line', () => {
    expect(parseShebang('#!/usr/bin/env node')).toEqual({ env: {}, nodeArgs: [] });
    expect(parseShebang('#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node')).toEqual({ env: { MALLOC_ARENA_MAX: '2' }, nodeArgs: [] });
    expect(parseShebang('#!/usr/bin/env -S A=1 B=x=y node --max-semi-space-size=4 --no-warnings')).toEqual({
      env: { A: '1', B: 'x=y' },
      nodeArgs: ['--max-semi-space-size=4', '--no-warnings'],
    });
    expect(parseShebang('#!/usr/local/bin/node --flag')).toEqual({ env: {}, nodeArgs: ['--flag'] });
    expect(parseShebang('// not a launcher')).toEqual({ env: {}, nodeArgs: [] });
  });

  it('the shipped CLI limits glibc malloc arenas', () => {
    expect(launcher(join(findRepoRoot(), 'src', 'cli.ts')).env).toEqual({ MALLOC_ARENA_MAX: '2' });
  });
});
