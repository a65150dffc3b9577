// `npm run bench -- cloud`: the cloud-copy bench (replication to and restore from an Azurite vault).
// A placeholder for now; the lead fills it in.

export interface CloudBenchOptions {
  dir: string;
  sizeBytes: number;
  seed: number;
  runs: number;
  json: boolean;
  markdown: string | null;
}

export async function runCloudBench(_opts: CloudBenchOptions): Promise<number> {
  throw new Error('cloud bench: not yet');
}
