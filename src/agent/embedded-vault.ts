// The embedded demo vault: an Azurite started by strata on loopback (config `embeddedAzurite`), on the
// same port every time (kept in the state directory), with the server registered to it on first use.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startAzuriteProcess, type AzuriteProcess } from '../cloud/azurite-process.js';
import { createVaultCredentials } from '../cloud/vault-credentials.js';
import type { AgentContext } from './context.js';
import { writeSecretFile } from './secret-file.js';
import { getRegistration, register } from './vault.js';

export interface EmbeddedVault {
  endpoint: string;
  stop(): Promise<void>;
}

export async function startEmbeddedVault(ctx: AgentContext): Promise<EmbeddedVault | null> {
  const cfg = ctx.config.embeddedAzurite;
  if (!cfg?.enabled) return null;
  const location = cfg.location ?? path.join(ctx.config.stateDir, 'azurite');
  await mkdir(location, { recursive: true, mode: 0o700 });
  const portFile = path.join(ctx.config.stateDir, 'embedded-vault.json');
  const saved = existsSync(portFile) ? (JSON.parse(readFileSync(portFile, 'utf8')) as { port: number }).port : undefined;
  let azurite: AzuriteProcess;
  try {
    azurite = await startAzuriteProcess({ location, ...(saved ? { port: saved } : {}), clock: ctx.clock });
  } catch (err) {
    if (!saved) throw err;
    // The old port is taken: start on a new one and register again (same vault id, new endpoint).
    azurite = await startAzuriteProcess({ location, clock: ctx.clock });
  }
  await writeFile(portFile, JSON.stringify({ port: azurite.port }) + '\n');
  const reg = getRegistration(ctx.catalog());
  if (!reg || !reg.vault.blobEndpoint.endsWith(`:${azurite.port}/devstoreaccount1`)) {
    const credsFile = path.join(ctx.config.stateDir, 'embedded-vault.VaultCredentials');
    await writeSecretFile(
      credsFile,
      createVaultCredentials({
        endpoint: azurite.endpoint,
        container: 'strata-demo',
        vaultName: 'strata-demo',
        validDays: 3650,
        now: ctx.clock.now(),
        ...(reg ? { vaultId: reg.vaultId } : {}),
      }),
    );
    await register(ctx, credsFile);
  }
  ctx.log.info({ endpoint: azurite.endpoint, location }, 'embedded vault (Azurite) started');
  return { endpoint: azurite.endpoint, stop: () => azurite.stop() };
}
