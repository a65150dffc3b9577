// Azurite for tests: a thin wrapper over src/cloud/azurite-process.ts (start in beforeAll, stop in afterAll).
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, startAzuriteProcess } from '../../src/cloud/azurite-process.js';

export { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME };

export interface Azurite {
  /** `http://127.0.0.1:PORT/devstoreaccount1` */
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

/** Starts a fresh Azurite on a free loopback port with a temporary workspace (removed by `stop`). */
export async function startAzurite(): Promise<Azurite> {
  const azurite = await startAzuriteProcess();
  return { endpoint: azurite.endpoint, port: azurite.port, stop: azurite.stop };
}
