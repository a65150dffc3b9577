// Commands of the cloud copy: vault credentials, registration, cloud status, replication and repair.
import { writeSecretFile } from '../agent/secret-file.js';
import { OPERATIONS } from '../cloud/gate.js';
import { StrataError } from '../errors.js';
import { formatBytes, formatTime } from './format.js';
import { EXIT, common, type CommandRegistrar, type CommonOptions } from './invocation.js';

// Loaded by the command that runs them (cli/commands.ts: start-up time).
const vaultJobs = () => import('../agent/vault.js');

const OP_NAMES: Record<string, string> = {
  'backup-cloud': 'backup to Azure',
  'backup-disk': 'backup to disk',
  'restore-cloud': 'restore from Azure',
  'restore-disk': 'restore from disk',
};

export const registerCloudCommands: CommandRegistrar = (program, inv, setExit) => {
  const vault = program.command('vault').description('vault credentials');
  const credentials = vault.command('credentials').description('vault credentials files');
  common(credentials.command('create'))
    .description('write a vault credentials file for an Azure storage account or an Azurite endpoint')
    .requiredOption('--endpoint <url>', 'blob service URL (https://ACCOUNT.blob.core.windows.net, or http://127.0.0.1:PORT/devstoreaccount1 for Azurite)')
    .requiredOption('--container <name>', 'blob container of the vault')
    .option('--account-key <key>', 'storage account key (for Azurite, the well-known development key is the default)')
    .option('--account-name <name>', 'storage account name (default: from the endpoint)')
    .option('--sas <token>', 'a SAS token instead of the account key')
    .option('--entra <tenant:client>', 'Microsoft Entra ID service principal (its secret comes from AZURE_CLIENT_SECRET)')
    .option('--subscription <id>', 'Azure subscription id (for the subscription state check)')
    .option('--vault-name <name>', 'vault name (default: strata-<container>)')
    .option('--valid-days <n>', 'days the file stays valid for registration', '10')
    .requiredOption('--out <file>', 'where to write the file (created 0600)')
    .action(async (opts: CommonOptions & Record<string, string | undefined>) => {
      let entra: { tenantId: string; clientId: string } | undefined;
      if (opts['entra']) {
        const [tenantId, clientId] = opts['entra'].split(':');
        if (!tenantId || !clientId) throw new StrataError('STRATA_USAGE', '--entra takes TENANT_ID:CLIENT_ID', { kind: 'usage' });
        entra = { tenantId, clientId };
      }
      const validDays = Number(opts['validDays']);
      if (!Number.isFinite(validDays)) throw new StrataError('STRATA_USAGE', `--valid-days must be a number (got ${opts['validDays']})`, { kind: 'usage' });
      const xml = (await import('../cloud/vault-credentials.js')).createVaultCredentials({
        endpoint: opts['endpoint']!,
        container: opts['container']!,
        validDays,
        ...(opts['accountKey'] ? { accountKey: opts['accountKey'] } : {}),
        ...(opts['accountName'] ? { accountName: opts['accountName'] } : {}),
        ...(opts['sas'] ? { sas: opts['sas'] } : {}),
        ...(entra ? { entra } : {}),
        ...(opts['subscription'] ? { subscriptionId: opts['subscription'] } : {}),
        ...(opts['vaultName'] ? { vaultName: opts['vaultName'] } : {}),
      });
      await writeSecretFile(opts['out']!, xml);
      inv.print(opts, { file: opts['out'] }, `wrote vault credentials to ${opts['out']} (mode 0600; it holds a secret)`);
    });

  common(program.command('register'))
    .description('register this server to a vault (validates the credentials against the endpoint)')
    .requiredOption('--vault-credentials <file>', 'the vault credentials file')
    .option('--server-id <id>', 'take over the identity of a server already in the vault (recovery onto new hardware)')
    .action(async (opts: CommonOptions & { vaultCredentials: string; serverId?: string }) => {
      const ctx = inv.context(opts);
      const reg = await (await vaultJobs()).register(ctx, opts.vaultCredentials, opts.serverId ? { serverId: opts.serverId } : {});
      inv.print(opts, reg, () =>
        [
          `registered server ${reg.serverId} to vault ${reg.vaultName} (${reg.vaultId})`,
          `  endpoint ${reg.vault.blobEndpoint}, container ${reg.vault.containerName}${reg.createdContainer ? ' (created)' : ''}`,
        ].join('\n'),
      );
    });

  const cloud = program.command('cloud').description('the cloud copy');
  common(cloud.command('status'))
    .description('connectivity, subscription state, last contact, and what may run now (exit 0 when connected, 1 when not)')
    .option('--no-probe', 'do not contact the vault; report from the stored state')
    .action(async (opts: CommonOptions & { probe?: boolean }) => {
      const ctx = inv.context(opts);
      const status = await (await vaultJobs()).gateStatus(ctx, { probe: opts.probe !== false });
      inv.print(opts, status, () =>
        [
          `registered:    ${status.registered ? `yes, server ${status.serverId} in vault ${status.vault?.vaultName}` : 'no'}`,
          `connectivity:  ${status.connectivity}${status.lastContact ? ` (last contact ${formatTime(status.lastContact)})` : ' (no contact yet)'}`,
          `subscription:  ${status.subscription}${status.subscriptionSince ? ` since ${formatTime(status.subscriptionSince)}` : ''} (${status.subscriptionSource})`,
          ...OPERATIONS.map((op) => `${(OP_NAMES[op] + ':').padEnd(20)} ${status.decisions[op].allowed ? 'allowed' : 'STOPPED'}${status.decisions[op].allowed ? '' : ` — ${status.decisions[op].message}`}`),
        ].join('\n'),
      );
      if (status.connectivity !== 'connected' || !status.registered) setExit(EXIT.failed);
    });

  common(program.command('replicate'))
    .description('upload the recovery points waiting for the cloud (resumes an interrupted upload)')
    .action(async (opts: CommonOptions) => {
      const ctx = inv.context(opts);
      const progress = inv.progress(opts);
      let r;
      try {
        r = await (await import('../agent/replication.js')).replicate(ctx, { onProgress: (p) => progress.update({ label: 'upload', done: p.bytesDone, total: p.bytesTotal, unit: 'bytes' }) });
      } finally {
        progress.stop();
      }
      const purged = r.purged;
      inv.print(opts, r, () =>
        [
          `uploaded ${r.recoveryPoints.length} recovery point(s): ${r.packsUploaded} packs (${formatBytes(r.bytesUploaded)}), ${r.packsAlreadyThere} already in the vault, ${r.retries} request(s) retried`,
          ...(purged.length ? [`removed ${purged.length} object(s) soft-deleted more than 14 days ago`] : []),
        ].join('\n'),
      );
    });

  common(program.command('repair'))
    .description('heal each copy from the other: damaged or lost packs on disk come back from the vault; ones missing in the vault are uploaded again')
    .action(async (opts: CommonOptions) => {
      const ctx = inv.context(opts);
      const r = await (await import('../agent/cloud-jobs.js')).repair(ctx);
      inv.print(opts, r, () =>
        [
          ...(r.descriptionRestored.length ? [`restored from the vault: ${r.descriptionRestored.join(', ')}`] : []),
          `repaired on disk: ${r.localRepaired.length ? r.localRepaired.join(', ') : 'nothing needed'}`,
          `repaired in the vault: ${r.vaultRepaired.length ? r.vaultRepaired.join(', ') : 'nothing needed'}`,
          ...r.localUnrepairable.map((u) => `NOT REPAIRED on disk: ${u.object}: ${u.problem}`),
          ...r.vaultUnrepairable.map((u) => `NOT REPAIRED in the vault: ${u.object}: ${u.problem}`),
          `after repair: disk ${r.checkAfter.ok ? 'sound' : `${r.checkAfter.problems} problem(s)`}, vault ${r.checkAfter.vaultOk ? 'sound' : `${r.checkAfter.vaultProblems} problem(s)`}`,
        ].join('\n'),
      );
      if (r.localUnrepairable.length || r.vaultUnrepairable.length || !r.checkAfter.ok || !r.checkAfter.vaultOk) setExit(EXIT.failed);
    });

};
