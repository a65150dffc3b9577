// `npm run bench -- cloud`: upload throughput of strata's replication to an Azurite vault, against a
// plain SDK upload of the very same bytes (the pack files) to the same Azurite, alternating, in one
// invocation. The target (issue 4): strata ≥ 80% of the plain upload.
import { createCipheriv } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, totalmem, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createContainerClient } from '../src/cloud/azure-store.js';
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, startAzuriteProcess } from '../src/cloud/azurite-process.js';
import { runQuiet } from './measure.js';
import { median } from './report.js';

export interface CloudBenchOptions {
  dir: string;
  sizeBytes: number;
  seed: number;
  runs: number;
  json: boolean;
  markdown: string | null;
}

const CLOUD_DEFAULT_BYTES = 512 * 1024 * 1024;
const PASSPHRASE = 'bench passphrase for the cloud copy';

function repoRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** Incompressible files (what packs mostly are, once compressed and encrypted). */
async function makeData(dir: string, bytes: number, seed: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  const file = 32 * 1024 * 1024;
  for (let i = 0, left = bytes; left > 0; i++, left -= file) {
    const key = Buffer.alloc(16);
    key.writeUInt32LE(seed + i);
    const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
    await writeFile(join(dir, `f${i}.bin`), Buffer.concat([c.update(Buffer.alloc(Math.min(file, left))), c.final()]));
  }
}

async function strata(cli: string, config: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runQuiet(process.execPath, [cli, ...args, '--config', config]);
}

export async function runCloudBench(opts: CloudBenchOptions): Promise<number> {
  const bytes = opts.sizeBytes > 0 && opts.sizeBytes !== 2 * 1024 ** 3 ? opts.sizeBytes : CLOUD_DEFAULT_BYTES;
  const runs = Math.max(1, opts.runs);
  const cli = join(repoRoot(), 'dist', 'src', 'cli.js');
  const work = await mkdtemp(join(tmpdir(), 'strata-cloud-bench-'));
  const azurite = await startAzuriteProcess({ location: join(work, 'azurite') });
  const rows: { run: number; tool: 'strata' | 'strata-job' | 'sdk'; seconds: number; bytes: number; mbps: number }[] = [];
  try {
    const data = join(work, 'data');
    console.error(`cloud bench: generating ${(bytes / 2 ** 20).toFixed(0)} MiB of incompressible data`);
    await makeData(data, bytes, opts.seed);
    for (let run = 1; run <= runs; run++) {
      // strata: disk backup first (not measured), then the upload of that recovery point (measured).
      const dir = join(work, `strata-${run}`);
      await mkdir(join(dir, 'scratch'), { recursive: true });
      await writeFile(join(dir, 'pass'), PASSPHRASE + '\n', { mode: 0o600 });
      const config = join(dir, 'strata.json');
      await writeFile(
        config,
        JSON.stringify({
          stateDir: join(dir, 'state'),
          pool: join(dir, 'pool'),
          scratch: join(dir, 'scratch'),
          passphraseFile: join(dir, 'pass'),
          protectionGroups: [{ name: 'bench', sources: [{ path: data }], disk: { syncFrequency: '0 * * * *', retentionDays: 14 }, online: { schedule: '0 21 * * *', retention: { daily: 30 } } }],
          subscription: { provider: 'static', state: 'active' },
        }),
      );
      for (const args of [
        ['init'],
        ['vault', 'credentials', 'create', '--endpoint', azurite.endpoint, '--container', `strata-${run}`, '--out', join(dir, 'vault.xml')],
        ['register', '--vault-credentials', join(dir, 'vault.xml')],
        ['backup', 'bench', '--to', 'disk'],
      ]) {
        const r = await strata(cli, config, args);
        if (r.code !== 0) throw new Error(`strata ${args[0]} failed: ${r.stderr}`);
      }
      const packDir = join(dir, 'pool', 'packs');
      const packs: string[] = [];
      for (const d of await readdir(packDir)) for (const f of await readdir(join(packDir, d))) packs.push(join(packDir, d, f));
      let packBytes = 0;
      for (const p of packs) packBytes += (await readFile(p)).length;

      const t0 = process.hrtime.bigint();
      const up = await strata(cli, config, ['backup', 'bench', '--to', 'cloud', '--json']);
      const strataSec = Number(process.hrtime.bigint() - t0) / 1e9;
      if (up.code !== 0) throw new Error(`strata upload failed: ${up.stderr}`);
      const cloud = (JSON.parse(up.stdout) as { cloud: { bytesUploaded: number; uploadSeconds: number } }).cloud;
      const uploaded = cloud.bytesUploaded;
      rows.push({ run, tool: 'strata', seconds: cloud.uploadSeconds, bytes: uploaded, mbps: uploaded / 1e6 / cloud.uploadSeconds });
      rows.push({ run, tool: 'strata-job', seconds: strataSec, bytes: uploaded, mbps: uploaded / 1e6 / strataSec });

      // The plain SDK: the same pack files, 4 at a time (strata's parallelism), one Put Blob each.
      const container = createContainerClient({ endpoint: azurite.endpoint, container: `sdk-${run}`, auth: { type: 'AccountKey', accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY } });
      await container.createIfNotExists();
      const t1 = process.hrtime.bigint();
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < packs.length) {
            const p = packs[next++]!;
            const body = await readFile(p);
            await container.getBlockBlobClient(`packs/${p.split('/').pop()}`).uploadData(body, { maxSingleShotSize: 256 * 1024 * 1024 });
          }
        }),
      );
      const sdkSec = Number(process.hrtime.bigint() - t1) / 1e9;
      rows.push({ run, tool: 'sdk', seconds: sdkSec, bytes: packBytes, mbps: packBytes / 1e6 / sdkSec });
      console.error(
        `run ${run}: strata ${(uploaded / 1e6 / cloud.uploadSeconds).toFixed(1)} MB/s uploading (${cloud.uploadSeconds.toFixed(2)} s; whole CLI job ${strataSec.toFixed(2)} s), SDK ${(packBytes / 1e6 / sdkSec).toFixed(1)} MB/s (${sdkSec.toFixed(2)} s)`,
      );
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    await azurite.stop();
    await rm(work, { recursive: true, force: true });
  }
  const s = median(rows.filter((r) => r.tool === 'strata').map((r) => r.mbps))!;
  const job = median(rows.filter((r) => r.tool === 'strata-job').map((r) => r.mbps))!;
  const k = median(rows.filter((r) => r.tool === 'sdk').map((r) => r.mbps))!;
  const ratio = s / k;
  const result = {
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: +(totalmem() / 2 ** 30).toFixed(1) },
    bytes,
    runs: rows,
    medianMBps: { strata: +s.toFixed(1), strataWholeJob: +job.toFixed(1), sdk: +k.toFixed(1) },
    ratio: +ratio.toFixed(2),
    target: 0.8,
    met: ratio >= 0.8,
  };
  const md = [
    `| upload to Azurite (${(bytes / 2 ** 20).toFixed(0)} MiB incompressible, median of ${runs}) | MB/s |`,
    '|---|---:|',
    `| strata replication, upload phase (staging through scratch, MD5 per put, retry wrapper, vault index, manifests) | ${s.toFixed(1)} |`,
    `| strata \`backup --to cloud\` as a whole CLI job (adds process start, scrypt, gate probe, catalog, tree walk) | ${job.toFixed(1)} |`,
    `| plain SDK \`uploadData\` of the same pack files, 4 in parallel | ${k.toFixed(1)} |`,
    `| ratio (target ≥ 0.80) | **${ratio.toFixed(2)}** ${ratio >= 0.8 ? '(met)' : '(missed)'} |`,
  ].join('\n');
  if (opts.markdown) await writeFile(opts.markdown, md + '\n');
  if (opts.json) console.log(JSON.stringify(result, null, 2));
  else console.log(`\n${md}\n`);
  return result.met ? 0 : 1;
}
