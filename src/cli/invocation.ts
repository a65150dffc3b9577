// One invocation of `strata`: its output channel, its lazily opened context, and the options every
// command shares. Command modules (commands.ts, and the ones it registers) build on it.
import type { Command } from 'commander';
import { StrataError } from '../errors.js';
import { AgentContext } from '../agent/context.js';
import type { EarlyStart } from '../agent/early-start.js';
import { loadConfig, resolveConfigPath } from '../config/load.js';
import type { StrataConfig } from '../config/types.js';
import { createProgressReporter } from './progress.js';

export const EXIT = { ok: 0, failed: 1, usage: 2, gate: 3 } as const;

export interface CommonOptions {
  config?: string;
  json?: boolean;
  progress?: boolean;
}

/** Output channel of one invocation (injectable for tests). */
export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  tty: boolean;
}

/** Where termination signals come from (the process; a stand-in in tests). */
export interface SignalSource {
  on(event: 'SIGINT' | 'SIGTERM', listener: (sig: NodeJS.Signals) => void): unknown;
  off(event: 'SIGINT' | 'SIGTERM', listener: (sig: NodeJS.Signals) => void): unknown;
  exit(code: number): void;
}

export const defaultIo: Io = {
  out: (s) => process.stdout.write(s.endsWith('\n') ? s : s + '\n'),
  err: (s) => process.stderr.write(s.endsWith('\n') ? s : s + '\n'),
  tty: Boolean(process.stderr.isTTY),
};

export class Invocation {
  ctx: AgentContext | null = null;
  /** `early`: what cli.ts started before this command's modules loaded (handed to the context). */
  constructor(
    readonly io: Io,
    readonly early: EarlyStart = {},
  ) {}

  context(opts: CommonOptions): AgentContext {
    if (this.ctx) return this.ctx;
    const config: StrataConfig = loadConfig(resolveConfigPath(opts.config));
    this.ctx = new AgentContext(config, { warn: (m) => this.io.err(`strata: warning: ${m}`), spareLister: this.early.lister ?? null });
    return this.ctx;
  }

  print(opts: CommonOptions, json: unknown, human: string | (() => string)): void {
    if (opts.json) this.io.out(JSON.stringify(json, null, 2));
    else this.io.out(typeof human === 'string' ? human : human());
  }

  progress(opts: CommonOptions) {
    return createProgressReporter({ enabled: opts.progress !== false, tty: this.io.tty });
  }

  /**
   * An abort signal for a job run in this process. The first SIGINT or SIGTERM aborts the job, which then
   * stops cleanly: its lock released, its temporary files removed (a restore keeps the files it had
   * completed and no half-written one); the job fails with STRATA_INTERRUPTED and `after` says what
   * to do next. A second signal ends the process at once. `dispose` removes the handlers.
   */
  interruptible(what: string, after: string, proc: SignalSource = process): { signal: AbortSignal; dispose: () => void } {
    const ac = new AbortController();
    const onSignal = (sig: NodeJS.Signals) => {
      if (ac.signal.aborted) return proc.exit(128 + (sig === 'SIGINT' ? 2 : 15));
      this.io.err(`strata: ${sig}: stopping the ${what} cleanly (send it again to stop at once)`);
      ac.abort(new StrataError('STRATA_INTERRUPTED', `the ${what} was interrupted (${sig}) and stopped cleanly; ${after}`, { kind: 'failed' }));
    };
    proc.on('SIGINT', onSignal);
    proc.on('SIGTERM', onSignal);
    return {
      signal: ac.signal,
      dispose: () => {
        proc.off('SIGINT', onSignal);
        proc.off('SIGTERM', onSignal);
      },
    };
  }
}

export function common(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'config file (default: $STRATA_CONFIG, then /etc/strata/strata.json)')
    .option('--json', 'print the result as JSON on stdout')
    .option('--no-progress', 'do not show progress');
}

/**
 * An option that takes a value takes the argument after it even when that is another option:
 * `--exclude --config FILE` reads `--config` (and FILE) as patterns and loses the config, and
 * `--target --json` restores into a directory named "--json". Throws a usage error naming the option
 * that was taken as a value (a value that really starts like an option can be written `./--json`).
 */
export function rejectOptionsAsValues(cmd: Command): void {
  const names = new Set(cmd.options.flatMap((o) => [o.long, o.short]).filter((n): n is string => !!n));
  for (const option of cmd.options) {
    const value: unknown = cmd.getOptionValue(option.attributeName());
    const values = Array.isArray(value) ? value : [value];
    const taken = values.find((v): v is string => typeof v === 'string' && names.has(v.split('=')[0]!));
    if (taken !== undefined) {
      const flag = option.long ?? option.short ?? option.flags;
      throw new StrataError('STRATA_USAGE', `${flag} is missing its value: it took the option ${taken.split('=')[0]} as one (give the value right after ${flag})`, { kind: 'usage' });
    }
  }
}

/** A module that adds commands to the program. `setExit` sets the exit code without throwing. */
export type CommandRegistrar = (program: Command, inv: Invocation, setExit: (code: number) => void) => void;
