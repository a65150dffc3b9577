// The command tree of `strata`, built with commander. Each action opens what it needs, runs a job
// from src/agent, and prints a human summary or, with --json, one JSON document on stdout.
import { Command, CommanderError, Option } from 'commander';
export { EXIT } from './invocation.js';
import { readFileSync } from 'node:fs';
import { backupLabel } from '../agent/backup-sources.js';
import { closeEarly, type EarlyStart } from '../agent/early-start.js';
import { errorChain } from '../agent/log.js';
// The job modules (and what they import) are loaded by the command that runs them, so that
// `strata --version`, `--help` and a disk-only job never load the cloud side.
import type * as Jobs from '../agent/jobs.js';
import type * as CloudJobs from '../agent/cloud-jobs.js';
const jobs = () => import('../agent/jobs.js');
const cloudJobs = () => import('../agent/cloud-jobs.js');
const daemonClient = () => import('../agent/control-client.js');
import { generatePassphrase, readPassphraseFile } from '../crypto/passphrase.js';
import { StrataError, toStrataError } from '../errors.js';
import type { ConflictPolicy } from '../replica/restore.js';
import { formatBytes, formatDuration, formatTime, table } from './format.js';
import { registerCloudCommands } from './cloud-commands.js';
import { registerDaemonCommands } from './daemon-commands.js';
import { EXIT, Invocation, common, defaultIo, rejectOptionsAsValues, type CommandRegistrar, type CommonOptions, type Io } from './invocation.js';

/** Command modules beyond the core ones; each adds its commands to the program. */
export const registrars: CommandRegistrar[] = [registerCloudCommands, registerDaemonCommands];

function build(inv: Invocation, setExit: (code: number) => void): Command {
  const program = new Command('strata')
    .description('Disk-to-disk-to-cloud backup: deduplicated, compressed, encrypted recovery points in a local storage pool, replicated to Azure Blob Storage.')
    .version(readVersion(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => inv.io.out(s.trimEnd()),
      // commander's own parse errors get strata's one-line form and a stable code.
      writeErr: (s) => inv.io.err(s.trimEnd().replace(/^error: /, 'strata: error STRATA_USAGE: ')),
    })
    .exitOverride()
    .hook('preAction', (_program, command) => rejectOptionsAsValues(command));

  common(program.command('init'))
    .description('create the storage pool and its first key slot (passphrase from the config\'s passphraseFile)')
    .option('--generate-passphrase', 'generate a strong passphrase and write it to the passphrase file (0600)')
    .action(async (opts: CommonOptions & { generatePassphrase?: boolean }) => {
      const ctx = inv.context(opts);
      const r = await (await jobs()).initPool(ctx, { generatePassphrase: opts.generatePassphrase ?? false });
      inv.print(opts, r, () =>
        [
          `created storage pool ${r.poolId} at ${r.pool}`,
          r.generatedPassphrase ? `generated passphrase (also written to ${r.passphraseFile}):\n\n    ${r.generatedPassphrase}\n` : `passphrase read from ${r.passphraseFile}`,
          'IMPORTANT: keep a copy of the passphrase somewhere safe, away from this server. Without it, no one (not even strata) can read the backups: a lost passphrase means lost data.',
        ].join('\n'),
      );
    });

  common(program.command('backup'))
    .description('make a recovery point now: of a protection group, or of one directory (--path)')
    .argument('[group]', 'protection group (from the config)')
    .option('--path <dir>', 'ad hoc backup of one directory outside any group')
    .option('--exclude <glob...>', 'with --path: glob patterns to leave out')
    .addOption(new Option('--to <where>', 'disk, cloud or both (default: disk, then cloud if online protection is on)').choices(['disk', 'cloud', 'both']))
    .action(async (group: string | undefined, opts: CommonOptions & { path?: string; exclude?: string[]; to?: string }) => {
      const ctx = inv.context(opts);
      // The tree is listed from now on, while the rest starts up (a daemon that takes the job finds it listed warm).
      if (opts.to !== 'cloud') ctx.prefetchBackupWalk({ ...(group !== undefined ? { group } : {}), ...(opts.path !== undefined ? { path: opts.path } : {}), ...(opts.exclude ? { exclude: opts.exclude } : {}) });
      const progress = inv.progress(opts);
      const failedFiles: string[] = [];
      let result;
      let interrupt: ReturnType<Invocation['interruptible']> | null = null;
      try {
        result = await (await daemonClient()).tryDaemon<Awaited<ReturnType<typeof Jobs.runBackup>>>(inv, opts, { backup: { group, path: opts.path, exclude: opts.exclude, to: opts.to as 'disk' } }, (p) => progress.update(p));
        if (!result) {
          ctx.prefetchPool();
          ctx.prefetchCatalog();
          interrupt = inv.interruptible('backup', 'run the backup again');
        }
        result ??= await (await jobs()).runBackup(ctx, {
          ...(interrupt ? { signal: interrupt.signal } : {}),
          ...(group !== undefined ? { group } : {}),
          ...(opts.path !== undefined ? { path: opts.path } : {}),
          ...(opts.exclude ? { exclude: opts.exclude } : {}),
          ...(opts.to ? { to: opts.to as 'disk' | 'cloud' | 'both' } : {}),
          onProgress: (p) => progress.update({ label: backupLabel(p), done: p.bytes, total: p.totalBytes, unit: 'bytes' }),
          onFileError: (source, rel, message) => failedFiles.push(`${source}: ${rel}: ${message}`),
        });
      } finally {
        interrupt?.dispose();
        progress.stop();
      }
      const first = result.sources[0];
      inv.print(
        opts,
        { ...result, recoveryPoint: first?.recoveryPoint ? { id: first.recoveryPoint, stats: first.stats } : null },
        () =>
          result.sources
            .map((s) => {
              if (s.error) return `backup of ${s.source} FAILED: ${s.error.message}`;
              const st = s.stats!;
              const lines = [
                `recovery point ${s.recoveryPoint!.slice(0, 12)} of ${s.source}: ${st.files} files, ${st.dirs} directories, ${formatBytes(st.bytes)}`,
                `  read ${formatBytes(st.bytesRead)} (${st.filesRead} files), added ${formatBytes(st.newBytes)} new data (${st.newBlobs} blobs), stored ${formatBytes(st.storedBytes)} in ${formatDuration(st.durationMs)}`,
              ];
              if (s.warnings.length) lines.push(`  completed with ${s.warnings.length} warning(s):`, ...s.warnings.slice(0, 50).map((w) => `    ${w}`));
              return lines.join('\n');
            })
            .concat(result.cloud ? [`uploaded to the vault: ${result.cloud.packsUploaded} packs (${formatBytes(result.cloud.bytesUploaded)}), ${result.cloud.packsAlreadyThere} already there, ${result.cloud.retries} retried request(s)`] : [])
            .concat(result.cloudError ? [`upload to the vault did not complete (the disk recovery point stands; the next run retries): ${result.cloudError}`] : [])
            .join('\n'),
      );
      if (result.state === 'failed') {
        for (const s of result.sources) if (s.error) inv.io.err(`strata: error ${s.error.code}: backup of ${s.source} failed: ${s.error.message}`);
        setExit(EXIT.failed);
      }
    });

  common(program.command('recovery-points'))
    .description('list recovery points, with their disk and cloud state')
    .argument('[group]', 'only this protection group')
    .option('--server <id>', "list another server's recovery points straight from the vault (with that server's passphrase)")
    .option('--passphrase-file <file>', 'with --server: the passphrase of that server\'s pool')
    .action(async (group: string | undefined, opts: CommonOptions & { server?: string; passphraseFile?: string }) => {
      const ctx = inv.context(opts);
      const rows = opts.server
        ? await (await cloudJobs()).listVaultRecoveryPoints(ctx, { serverId: opts.server, ...(opts.passphraseFile ? { passphraseFile: opts.passphraseFile } : {}), ...(group !== undefined ? { group } : {}) })
        : await (await jobs()).listRecoveryPoints(ctx, group === undefined ? {} : { group });
      inv.print(opts, rows, () =>
        rows.length === 0
          ? 'no recovery points'
          : table(
              ['ID', 'TIME', 'GROUP', 'SOURCE', 'FILES', 'SIZE', 'DISK', 'CLOUD'],
              rows.map((r) => [r.id.slice(0, 12), formatTime(r.time), r.group || '-', r.source, String(r.stats['files'] ?? ''), formatBytes(r.stats['bytes'] ?? 0), r.diskState, r.cloudState]),
            ),
      );
    });

  common(program.command('restore'))
    .description('restore a recovery point, or one item of it, into a target directory (never overwrites silently)')
    .argument('<recovery-point>', 'recovery point id (or a unique prefix of it), or "latest"')
    .requiredOption('--target <dir>', 'directory to restore into (created if missing)')
    .option('--item <path>', 'restore only this file or directory of the recovery point (as <target>/<its name>)')
    .option('--group <name>', 'with "latest": the latest of this protection group')
    .addOption(new Option('--from <copy>', 'which copy to restore from').choices(['disk', 'cloud']).default('disk'))
    .option('--server <id>', "with --from cloud: restore another server's recovery point (alternate-server recovery)")
    .option('--passphrase-file <file>', "with --server: that server's passphrase")
    .addOption(new Option('--on-conflict <policy>', 'what to do with an item that already exists at the target (default: stop with an error before writing anything)').choices(['copy', 'skip', 'overwrite']))
    .action(async (rp: string, opts: CommonOptions & { target: string; item?: string; group?: string; from: string; onConflict?: ConflictPolicy; server?: string; passphraseFile?: string }) => {
      const ctx = inv.context(opts);
      const progress = inv.progress(opts);
      let r;
      let interrupt: ReturnType<Invocation['interruptible']> | null = null;
      try {
        const viaDaemon =
          opts.from === 'disk' ? await (await daemonClient()).tryDaemon<Awaited<ReturnType<typeof Jobs.runRestore>>>(inv, opts, { restore: { recoveryPoint: rp, target: opts.target, onConflict: opts.onConflict ?? 'error', item: opts.item, group: opts.group } }, (p) => progress.update(p)) : null;
        if (!viaDaemon && opts.from === 'disk') {
          ctx.prefetchPool();
          ctx.prefetchWorkers();
        }
        if (!viaDaemon) interrupt = inv.interruptible('restore', 'the files it completed are in place (none half-written); run it again with --on-conflict skip to finish');
        r =
          viaDaemon ??
          await (opts.from === 'cloud' ? (await cloudJobs()).restoreFromCloud : (await jobs()).runRestore)(ctx, {
          ...(interrupt ? { signal: interrupt.signal } : {}),
          ...(opts.server ? { serverId: opts.server } : {}),
          ...(opts.passphraseFile ? { passphraseFile: opts.passphraseFile } : {}),
          recoveryPoint: rp,
          target: opts.target,
          onConflict: opts.onConflict ?? 'error',
          ...(opts.item !== undefined ? { item: opts.item } : {}),
          ...(opts.group !== undefined ? { group: opts.group } : {}),
          onProgress: (p) => progress.update({ label: 'restore', done: p.bytes, total: p.totalBytes, unit: 'bytes' }),
        });
      } finally {
        interrupt?.dispose();
        progress.stop();
      }
      inv.print(opts, r, () =>
        [
          `restored ${r.files} files (${formatBytes(r.bytes)}), ${r.dirs} directories, ${r.symlinks} symlinks from recovery point ${r.recoveryPoint.slice(0, 12)} to ${opts.target}`,
          ...r.renamed.slice(0, 20).map((x) => `  ${x.from} existed: restored as ${x.to}`),
          ...(r.skipped.length ? [`  skipped ${r.skipped.length} existing item(s)`] : []),
          ...r.warnings.map((w) => `  warning: ${w}`),
        ].join('\n'),
      );
    });

  common(program.command('check'))
    .description('verify the pool: every recovery point resolves to packs that exist; --read-data decrypts and verifies every blob')
    .option('--read-data', 'read every pack and verify every blob (slow: reads the whole pool)')
    .option('--cloud', 'also check the vault copy')
    .action(async (opts: CommonOptions & { readData?: boolean; cloud?: boolean }) => {
      const ctx = inv.context(opts);
      const progress = inv.progress(opts);
      let report: Awaited<ReturnType<typeof Jobs.runCheck>> & { cloud?: Awaited<ReturnType<typeof CloudJobs.checkCloud>> };
      const interrupt = inv.interruptible('check', 'nothing was changed; run it again');
      try {
        ctx.prefetchPool();
        if (opts.readData) ctx.prefetchWorkers();
        report = await (await jobs()).runCheck(ctx, {
          signal: interrupt.signal,
          readData: opts.readData ?? false,
          onProgress: (p) => progress.update({ label: `check: ${p.phase}`, done: p.done, total: p.total, unit: 'items' }),
        });
        if (opts.cloud) {
          const cloud = await (await cloudJobs()).checkCloud(ctx, { readData: opts.readData ?? false, signal: interrupt.signal });
          report = { ...report, ok: report.ok && cloud.ok, cloud };
        }
      } finally {
        interrupt.dispose();
        progress.stop();
      }
      inv.print(opts, report, () => {
        const lines = [
          `checked ${report.recoveryPoints} recovery points, ${report.packs} packs, ${report.blobs} blobs${opts.readData ? `, read ${formatBytes(report.bytesRead)}` : ''}`,
        ];
        if (report.unreferencedPacks.length) lines.push(`${report.unreferencedPacks.length} pack(s) not referenced by any index (left by an interrupted backup; prune removes them)`);
        const cloud = (report as { cloud?: Awaited<ReturnType<typeof CloudJobs.checkCloud>> }).cloud;
        if (cloud) {
          lines.push(`vault: checked ${cloud.recoveryPoints} recovery points, ${cloud.packs} packs, ${cloud.blobs} blobs${opts.readData ? `, read ${formatBytes(cloud.bytesRead)}` : ''}`);
          for (const p of cloud.problems) lines.push(`DAMAGED in the vault: ${p.kind} ${p.object}: ${p.problem}${p.affectedCount ? ` (affects ${p.affected.join(', ')})` : ''}`);
          for (const m of cloud.catalogMismatches) lines.push(`MISSING in the vault: pack ${m.pack}: ${m.problem}`);
        }
        if (report.ok) lines.push('no problems found');
        for (const p of report.problems) {
          lines.push(`DAMAGED ${p.kind} ${p.object}: ${p.problem}`);
          if (p.affectedCount) lines.push(`  affects ${p.affectedCount} file(s)/directories:`, ...p.affected.map((a) => `    ${a}`));
          if (p.affectedCount > p.affected.length) lines.push(`    … and ${p.affectedCount - p.affected.length} more`);
        }
        return lines.join('\n');
      });
      if (!report.ok) {
        inv.io.err(`strata: error STRATA_CHECK_FAILED: ${report.problems.length} problem(s) found; see the report above (strata repair heals from the vault when it has a copy)`);
        setExit(EXIT.failed);
      }
    });

  const catalogCmd = program.command('catalog').description('the local catalog (a rebuildable cache of the pool and the vault)');
  common(catalogCmd.command('rebuild'))
    .description('re-create the catalog from the pool (or the vault)')
    .addOption(new Option('--from <copy>', 'rebuild from the local pool or the vault').choices(['disk', 'cloud']).default('disk'))
    .option('--server <id>', "with --from cloud: another server's copy in the vault (alternate-server recovery)")
    .option('--passphrase-file <file>', "with --server: that server's passphrase")
    .action(async (opts: CommonOptions & { from: string; server?: string; passphraseFile?: string }) => {
      const ctx = inv.context(opts);
      if (opts.from === 'cloud') {
        const c = await (await cloudJobs()).rebuildCatalogFromCloud(ctx, { ...(opts.server ? { serverId: opts.server } : {}), ...(opts.passphraseFile ? { passphraseFile: opts.passphraseFile } : {}) });
        inv.print(opts, c, () =>
          [`catalog rebuilt from the vault (server ${c.serverId}): ${c.recoveryPoints} recovery points, ${c.packs} packs`, ...c.unreadable.map((u) => `  unreadable: ${u}`)].join('\n'),
        );
        return;
      }
      const r = await (await jobs()).rebuildCatalogFromDisk(ctx);
      inv.print(opts, r, () =>
        [`catalog rebuilt from ${ctx.config.pool}: ${r.recoveryPoints} recovery points, ${r.packs} packs`, ...r.unreadable.map((u) => `  unreadable: ${u} (run strata check)`)].join('\n'),
      );
    });

  const passCmd = program.command('passphrase').description('the pool passphrase');
  common(passCmd.command('change'))
    .description('add a key slot for a new passphrase, write it to the passphrase file, remove the old slot (data untouched)')
    .option('--new-passphrase-file <file>', 'read the new passphrase from this file')
    .option('--generate', 'generate a strong new passphrase')
    .action(async (opts: CommonOptions & { newPassphraseFile?: string; generate?: boolean }) => {
      const ctx = inv.context(opts);
      let newPassphrase: string;
      if (opts.generate && opts.newPassphraseFile) throw new StrataError('STRATA_USAGE', 'give --new-passphrase-file or --generate, not both', { kind: 'usage' });
      if (opts.generate) newPassphrase = generatePassphrase();
      else if (opts.newPassphraseFile) newPassphrase = readPassphraseFile(opts.newPassphraseFile).passphrase;
      else throw new StrataError('STRATA_USAGE', 'give the new passphrase with --new-passphrase-file FILE, or --generate', { kind: 'usage' });
      const r = await (await jobs()).changePassphrase(ctx, { newPassphrase });
      inv.print(opts, { slot: r.slot, removedSlot: r.removed, passphraseFile: ctx.config.passphraseFile, vaultUpdated: r.vaultUpdated }, () =>
        [
          `passphrase changed: new key slot ${r.slot.slice(0, 12)}, old slot ${r.removed.slice(0, 12)} removed${r.vaultUpdated ? ' (in the vault too)' : ''}; ${ctx.config.passphraseFile} now holds the new passphrase`,
          ...(opts.generate ? [`new passphrase:\n\n    ${newPassphrase}\n`] : []),
          'Keep a copy of the new passphrase somewhere safe, away from this server.',
        ].join('\n'),
      );
    });

  for (const register of registrars) register(program, inv, setExit);
  return program;
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return '0.0.0';
  }
}

/**
 * Runs one `strata` command; returns its exit code. Never throws. `early`: threads cli.ts started
 * before this module loaded (early-start.ts); whatever of them the command does not take is closed
 * when it ends.
 */
export async function main(argv: string[], io: Io = defaultIo, early: EarlyStart = {}): Promise<number> {
  const inv = new Invocation(io, early);
  let exit: number = EXIT.ok;
  const program = build(inv, (c) => {
    exit = c;
  });
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exit;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
      return EXIT.usage;
    }
    return reportError(inv, err, json);
  } finally {
    inv.ctx?.close();
    void closeEarly(early);
  }
}

function reportError(inv: Invocation, err: unknown, json: boolean): number {
  const log = inv.ctx?.log;
  log?.error({ causes: errorChain(err) }, 'command failed');
  let code: string;
  let message: string;
  let exit: number;
  if (err instanceof StrataError) {
    code = err.code;
    message = err.message;
    exit = err.kind === 'gate' ? EXIT.gate : err.kind === 'failed' ? EXIT.failed : EXIT.usage;
  } else {
    const e = toStrataError(err);
    code = e.code;
    message = `${e.message}${log && code === 'STRATA_INTERNAL' ? ' (details in the log)' : ''}`;
    exit = EXIT.failed;
  }
  inv.io.err(`strata: error ${code}: ${message}`);
  if (json) inv.io.out(JSON.stringify({ error: { code, message } }, null, 2));
  return exit;
}
