// `npm start`: the strata daemon on embedded defaults (config/strata.example.json, everything under
// ./var). On first run it generates a small demo folder and creates the pool with a generated
// passphrase; the daemon starts the embedded vault (Azurite on loopback) and registers to it; the demo
// group gets its initial recovery point at once, on disk then in the vault; then the daemon keeps
// running its schedules until Ctrl-C. `strata --config config/strata.example.json …` talks to it.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon } from '../agent/daemon.js';
import { main } from '../cli/commands.js';
import { processClock } from '../clock.js';
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

async function cli(args: string[]): Promise<void> {
  console.log(`\n$ strata ${args.join(' ')} --config config/strata.example.json`);
  const code = await main([...args, '--config', configFile]);
  if (code !== 0) throw new Error(`strata ${args[0]} exited with ${code}`);
}

const dataDir = path.join(varDir, 'demo-data');
if (!existsSync(dataDir)) await demoData(dataDir);
if (!existsSync(path.join(varDir, 'pool', 'strata.json'))) await cli(['init', '--generate-passphrase']);

const config = loadConfig(configFile);
console.log('\nstarting the strata daemon (and its embedded vault: Azurite on 127.0.0.1)…');
const daemon = await startDaemon(config, { clock: processClock() });
const stop = (sig: string) => void daemon.stop(sig);
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
console.log(`daemon running: pid ${process.pid}, socket ${daemon.socketPath}`);

// The initial recovery point of the demo group, on disk then in the vault (later ones follow the schedules).
const started = await daemon.runner.backup({ group: 'demo', to: 'both' }, { trigger: 'ad hoc' });
const result = await started.done;
console.log(`\ninitial recovery point of group "demo": ${result.state}${result.cloud ? `, ${result.cloud.packsUploaded} pack(s) uploaded to the vault` : ''}`);
await cli(['recovery-points', 'demo']);
await cli(['cloud', 'status', '--no-probe']);
console.log(
  [
    '',
    `The daemon keeps running: disk recovery points every 15 minutes, the cloud copy at 21:00 (config/strata.example.json).`,
    `In another terminal:  node dist/src/cli.js jobs --config config/strata.example.json`,
    `                      node dist/src/cli.js restore latest --from cloud --target /tmp/demo-restore --config config/strata.example.json`,
    `Ctrl-C stops it. Everything lives under ${varDir}.`,
  ].join('\n'),
);
await daemon.stopped;
