// `npm start`: strata on embedded defaults (config/strata.example.json, everything under ./var).
// Generates a small demo folder, starts the embedded vault (Azurite on loopback) and registers to it,
// creates the pool with a generated passphrase on first run, then backs up the "demo" protection
// group to disk and to the vault, lists its recovery points, restores the latest from the vault and
// checks both copies.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentContext } from '../agent/context.js';
import { startEmbeddedVault } from '../agent/embedded-vault.js';
import { main } from '../cli/commands.js';
import { loadConfig } from '../config/load.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const configFile = path.join(repo, 'config', 'strata.example.json');
const varDir = path.join(repo, 'var');

async function demoData(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'reports', '2026'), { recursive: true });
  await mkdir(path.join(dir, 'logs'), { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < 20000; i++) lines.push(`2026-11-25T02:${String(i % 60).padStart(2, '0')}:00Z level=info msg="request served" path=/api/v1/items/${i % 997} ms=${(i * 7) % 113}`);
  await writeFile(path.join(dir, 'logs', 'app.log'), lines.join('\n') + '\n');
  await writeFile(path.join(dir, 'reports', '2026', 'q4.csv'), 'region,revenue\nnorth,1200\nsouth,980\n');
  await writeFile(path.join(dir, 'README.txt'), 'This folder is protected by the strata demo protection group.\n');
  await writeFile(path.join(dir, 'scratch.tmp'), 'excluded by the demo group\n');
}

async function run(args: string[]): Promise<void> {
  console.log(`\n$ strata ${args.join(' ')}`);
  const code = await main([...args, '--config', configFile]);
  if (code !== 0) throw new Error(`strata ${args[0]} exited with ${code}`);
}

const dataDir = path.join(varDir, 'demo-data');
if (!existsSync(dataDir)) await demoData(dataDir);
const ctx = new AgentContext(loadConfig(configFile), { logName: 'demo' });
console.log('starting the embedded vault (Azurite on 127.0.0.1)…');
const vault = await startEmbeddedVault(ctx);
ctx.close();
console.log(`vault: ${vault?.endpoint ?? 'none (embeddedAzurite is off)'}`);
try {
  if (!existsSync(path.join(varDir, 'pool', 'strata.json'))) await run(['init', '--generate-passphrase']);
  await run(['backup', 'demo']);
  await run(['recovery-points', 'demo']);
  const target = path.join(varDir, 'restore-demo-' + Date.now());
  await run(['restore', 'latest', '--group', 'demo', '--from', 'cloud', '--target', target]);
  await run(['check', '--read-data', '--cloud']);
  await run(['cloud', 'status']);
  console.log(`\nThe pool is in ${path.join(varDir, 'pool')}; the vault (Azurite) keeps its data in ${path.join(varDir, 'state', 'azurite')}; the latest recovery point was restored from the vault to ${target}.`);
} finally {
  await vault?.stop();
}
