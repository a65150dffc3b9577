// Progress for long jobs: a bar with rate and ETA on a terminal, a plain line every few seconds otherwise.
import { createRequire } from 'node:module';
import { formatBytes, formatDuration } from './format.js';

export interface ProgressSample {
  /** What is being done ("backup /srv/data", "restore", "check"). */
  label: string;
  done: number;
  /** Null while unknown (the bar then shows only the rate). */
  total: number | null;
  /** Units of done/total. */
  unit: 'bytes' | 'items';
}

export interface ProgressReporter {
  update(sample: ProgressSample): void;
  stop(): void;
}

export function createProgressReporter(options: { enabled: boolean; tty: boolean; stream?: NodeJS.WriteStream; intervalMs?: number }): ProgressReporter {
  if (!options.enabled) return { update: () => {}, stop: () => {} };
  const stream = options.stream ?? process.stderr;
  const started = Date.now();
  const fmt = (n: number, unit: ProgressSample['unit']) => (unit === 'bytes' ? formatBytes(n) : String(n));
  const describe = (s: ProgressSample) => {
    const elapsed = (Date.now() - started) / 1000;
    const rate = elapsed > 0 ? s.done / elapsed : 0;
    const pct = s.total ? Math.min(100, (100 * s.done) / s.total) : null;
    const eta = s.total && rate > 0 ? formatDuration(((s.total - s.done) / rate) * 1000) : '?';
    const rateText = s.unit === 'bytes' ? `${formatBytes(rate)}/s` : `${rate.toFixed(1)}/s`;
    return { pct, eta, rateText, text: `${s.label}: ${fmt(s.done, s.unit)}${s.total !== null ? ` of ${fmt(s.total, s.unit)}` : ''}${pct !== null ? ` (${pct.toFixed(0)}%)` : ''}, ${rateText}, ETA ${eta}` };
  };
  if (!options.tty) {
    // Quiet for short jobs: the first line comes after one interval.
    let last = started;
    let printed = false;
    let pending: ProgressSample | null = null;
    return {
      update(sample) {
        pending = sample;
        const now = Date.now();
        if (now - last >= (options.intervalMs ?? 5000)) {
          last = now;
          printed = true;
          stream.write(describe(sample).text + '\n');
          pending = null;
        }
      },
      stop() {
        if (pending && printed) stream.write(describe(pending).text + '\n');
      },
    };
  }
  // Loaded only for a terminal (~15 ms of start-up that a job run from cron or a script does not need).
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof import('cli-progress');
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: '{label} [{bar}] {percentage}% | {doneText}{totalText} | {rateText} | ETA {etaText}',
      hideCursor: true,
      clearOnComplete: false,
      barsize: 30,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let startedBar = false;
  return {
    update(sample) {
      const d = describe(sample);
      const payload = {
        label: sample.label,
        doneText: fmt(sample.done, sample.unit),
        totalText: sample.total !== null ? ` of ${fmt(sample.total, sample.unit)}` : '',
        rateText: d.rateText,
        etaText: d.eta,
      };
      const total = Math.max(sample.total ?? sample.done, sample.done, 1);
      if (!startedBar) {
        bar.start(total, sample.done, payload);
        startedBar = true;
      } else {
        bar.setTotal(total);
        bar.update(sample.done, payload);
      }
    },
    stop() {
      if (startedBar) bar.stop();
    },
  };
}
