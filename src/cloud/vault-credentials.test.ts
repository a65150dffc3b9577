import { describe, expect, it } from 'vitest';
import { AZURITE_ACCOUNT_KEY } from './azurite-process.js';
import {
  createVaultCredentials,
  isAzuriteEndpoint,
  parseVaultCredentials,
  redactVaultCredentials,
  vaultCredentialsXml,
  VAULT_CREDENTIALS_MAX_BYTES,
} from './vault-credentials.js';

const NOW = Date.parse('2026-03-01T12:00:00Z');
const VAULT_ID = '6f1c3d2e-8a4b-4c5d-9e6f-7a8b9c0d1e2f';
const SUB = '0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9';

/** A file as Azure's portal writes it (extra elements, a namespace, attributes), plus strata's elements. */
const azureStyle = `<?xml version="1.0" encoding="utf-8"?>
<RSBackupVaultAADCreds xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.datacontract.org/2004/07/Microsoft.Azure.Portal.RecoveryServices.Models.Common">
  <AadAuthority>https://login.windows.net</AadAuthority>
  <AadTenantId>72f988bf-86f1-41af-91ab-2d7cd011db47</AadTenantId>
  <AgentLinks>https://aka.ms/azurebackup_agent</AgentLinks>
  <AzureADCertThumbprint>0123456789ABCDEF</AzureADCertThumbprint>
  <ManagementCert>MIIC...</ManagementCert>
  <ResourceGroup>backup-rg</ResourceGroup>
  <ResourceId>1234567890</ResourceId>
  <ResourceName>contoso-vault</ResourceName>
  <ResourceType>Microsoft.RecoveryServices/vaults</ResourceType>
  <ServicePrincipalClientId>11111111-2222-3333-4444-555555555555</ServicePrincipalClientId>
  <SubscriptionId>${SUB}</SubscriptionId>
  <Version>2.0</Version>
  <Location>westeurope</Location>
  <BlobEndpoint>https://contosobackup.blob.core.windows.net/</BlobEndpoint>
  <ContainerName>strata-vault</ContainerName>
  <AuthType>Sas</AuthType>
  <SasToken>?sv=2022-11-02&amp;ss=b&amp;srt=co&amp;sp=rwdlac&amp;se=2026-04-01T00:00:00Z&amp;sig=abc%2Bdef%3D</SasToken>
  <VaultId>${VAULT_ID}</VaultId>
  <ValidFrom>2026-02-28T00:00:00Z</ValidFrom>
  <ValidTo>2026-03-10T00:00:00Z</ValidTo>
</RSBackupVaultAADCreds>`;

function catchError(fn: () => unknown): { code?: string; message: string; kind?: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; message: string; kind?: string };
  }
  throw new Error('expected an error');
}

describe('vault credentials', () => {
  it('round-trips an Azurite file with the default development key', () => {
    const xml = createVaultCredentials({ endpoint: 'http://127.0.0.1:10000/devstoreaccount1/', container: 'strata-demo', subscriptionId: SUB, now: NOW });
    const creds = parseVaultCredentials(xml, { now: NOW });
    expect(creds).toMatchObject({
      version: '2.0',
      vaultName: 'strata-strata-demo',
      subscriptionId: SUB,
      blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
      containerName: 'strata-demo',
      accountName: 'devstoreaccount1',
      auth: { type: 'AccountKey', accountName: 'devstoreaccount1', accountKey: AZURITE_ACCOUNT_KEY },
    });
    expect(creds.vaultId).toMatch(/^[0-9a-f-]{36}$/);
    expect(creds.validFrom.getTime()).toBe(NOW);
    expect(creds.validTo.getTime()).toBe(NOW + 10 * 86_400_000);
    expect(parseVaultCredentials(vaultCredentialsXml(creds), { now: NOW })).toEqual(creds);
  });

  it('round-trips SAS (with & escaped) and Entra files', () => {
    const sas = 'sv=2022-11-02&sp=rwdl&se=2026-04-01T00%3A00%3A00Z&sig=a%2Fb<c>';
    const xml = createVaultCredentials({ endpoint: 'https://acct1.blob.core.windows.net', container: 'vault', sas: `?${sas}`, now: NOW, vaultId: VAULT_ID });
    expect(xml).toContain('&amp;sp=');
    const creds = parseVaultCredentials(xml, { now: NOW });
    expect(creds.auth).toEqual({ type: 'Sas', sasToken: sas });
    expect(creds.accountName).toBe('acct1');
    expect(creds.vaultId).toBe(VAULT_ID);

    const entra = { tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47', clientId: '11111111-2222-3333-4444-555555555555' };
    const e = parseVaultCredentials(createVaultCredentials({ endpoint: 'https://acct1.blob.core.windows.net', container: 'vault', entra, now: NOW }), { now: NOW });
    expect(e.auth).toEqual({ type: 'Entra', ...entra });
    expect(e.aadTenantId).toBe(entra.tenantId);
  });

  it('accepts an Azure-style file with extra elements, a namespace and a leading ?', () => {
    const creds = parseVaultCredentials(azureStyle, { now: NOW });
    expect(creds).toMatchObject({
      vaultName: 'contoso-vault',
      resourceGroup: 'backup-rg',
      location: 'westeurope',
      blobEndpoint: 'https://contosobackup.blob.core.windows.net',
      auth: { type: 'Sas', sasToken: 'sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2026-04-01T00:00:00Z&sig=abc%2Bdef%3D' },
    });
  });

  it('names every missing and invalid field in one line', () => {
    const xml = `<RSBackupVaultAADCreds><Version>2.0</Version><ContainerName>Bad_Name</ContainerName>
      <AuthType>AccountKey</AuthType><AccountKey>not base64!</AccountKey><VaultId>nope</VaultId>
      <BlobEndpoint>http://example.com/x</BlobEndpoint><ValidFrom>2026-01-01T00:00:00Z</ValidFrom><ValidTo>yesterday</ValidTo>
    </RSBackupVaultAADCreds>`;
    const err = catchError(() => parseVaultCredentials(xml, { now: NOW }));
    expect(err).toMatchObject({ code: 'STRATA_VAULT_CREDENTIALS_MALFORMED', kind: 'input' });
    expect(err.message).not.toContain('\n');
    for (const name of ['ResourceName', 'AccountName', 'VaultId', 'ContainerName', 'BlobEndpoint', 'ValidTo', 'AccountKey']) {
      expect(err.message).toContain(name);
    }
    expect(err.message).not.toContain('ValidFrom');
  });

  it('requires the auth fields of the chosen AuthType', () => {
    const base = (extra: string) =>
      `<RSBackupVaultAADCreds><Version>2.0</Version><ResourceName>v</ResourceName><VaultId>${VAULT_ID}</VaultId>
       <BlobEndpoint>https://a.blob.core.windows.net</BlobEndpoint><ContainerName>vault</ContainerName>
       <ValidFrom>2026-01-01T00:00:00Z</ValidFrom><ValidTo>2026-12-01T00:00:00Z</ValidTo>${extra}</RSBackupVaultAADCreds>`;
    expect(catchError(() => parseVaultCredentials(base('<AuthType>Sas</AuthType>'), { now: NOW })).message).toContain('missing SasToken');
    expect(catchError(() => parseVaultCredentials(base('<AuthType>Entra</AuthType>'), { now: NOW })).message).toContain(
      'missing AadTenantId, ServicePrincipalClientId',
    );
    expect(catchError(() => parseVaultCredentials(base('<AuthType>Magic</AuthType>'), { now: NOW })).message).toContain('invalid AuthType');
    expect(catchError(() => parseVaultCredentials(base('<AuthType>Sas</AuthType><SasToken>a</SasToken><SasToken>b</SasToken>'), { now: NOW })).message).toContain(
      'SasToken (appears more than once)',
    );
  });

  it.each([
    ['not XML', 'hello'],
    ['unclosed element', '<RSBackupVaultAADCreds><Version>2.0</RSBackupVaultAADCreds>'],
    ['wrong root', '<VaultCreds><Version>2.0</Version></VaultCreds>'],
    ['empty', ''],
  ])('refuses malformed XML: %s', (_, xml) => {
    expect(catchError(() => parseVaultCredentials(xml, { now: NOW }))).toMatchObject({ code: 'STRATA_VAULT_CREDENTIALS_MALFORMED' });
  });

  it('refuses an entity bomb (billion laughs) quickly, before parsing', () => {
    const lols = Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i};`.repeat(10)}">`).join('\n');
    const bomb = `<?xml version="1.0"?>\n<!DOCTYPE RSBackupVaultAADCreds [\n<!ENTITY lol0 "lol">\n${lols}\n]>\n<RSBackupVaultAADCreds><Version>&lol9;</Version></RSBackupVaultAADCreds>`;
    const started = performance.now();
    const err = catchError(() => parseVaultCredentials(bomb, { now: NOW }));
    expect(performance.now() - started).toBeLessThan(100);
    expect(err).toMatchObject({ code: 'STRATA_VAULT_CREDENTIALS_MALFORMED' });
    expect(err.message).toContain('DOCTYPE');
    // An undeclared entity reference is never expanded either.
    const sneaky = azureStyle.replace('<Version>2.0</Version>', '<Version>&xxe;</Version>');
    expect(parseVaultCredentials(sneaky, { now: NOW }).version).toBe('&xxe;');
  });

  it('refuses an oversized file', () => {
    const padding = `<Padding>${'x'.repeat(VAULT_CREDENTIALS_MAX_BYTES)}</Padding>`;
    const big = azureStyle.replace('<Version>', `${padding}<Version>`);
    const err = catchError(() => parseVaultCredentials(big, { now: NOW }));
    expect(err).toMatchObject({ code: 'STRATA_VAULT_CREDENTIALS_MALFORMED' });
    expect(err.message).toContain('64 KiB');
  });

  it('refuses expired credentials, naming the date and what to do', () => {
    const xml = createVaultCredentials({ endpoint: 'http://127.0.0.1:10000/devstoreaccount1', container: 'vault', validDays: 2, now: NOW });
    expect(parseVaultCredentials(xml, { now: NOW + 2 * 86_400_000 }).containerName).toBe('vault');
    const err = catchError(() => parseVaultCredentials(xml, { now: NOW + 2 * 86_400_000 + 1 }));
    expect(err).toMatchObject({ code: 'STRATA_VAULT_CREDENTIALS_EXPIRED', kind: 'input' });
    expect(err.message).toContain('2026-03-03T12:00:00.000Z');
    expect(err.message).toMatch(/download new vault credentials/);
  });

  it('refuses plain http to a non-loopback host and contradictory or missing auth options', () => {
    expect(() => createVaultCredentials({ endpoint: 'http://10.0.0.5/devstoreaccount1', container: 'vault', accountKey: AZURITE_ACCOUNT_KEY, now: NOW })).toThrow(
      /BlobEndpoint/,
    );
    expect(() => createVaultCredentials({ endpoint: 'https://acct1.blob.core.windows.net', container: 'vault', now: NOW })).toThrow(/--account-key/);
    expect(() =>
      createVaultCredentials({ endpoint: 'https://acct1.blob.core.windows.net', container: 'vault', sas: 'sig=x', accountKey: AZURITE_ACCOUNT_KEY, now: NOW }),
    ).toThrow(/at most one/);
    expect(isAzuriteEndpoint('http://localhost:1234/devstoreaccount1/')).toBe(true);
    expect(isAzuriteEndpoint('https://acct1.blob.core.windows.net/devstoreaccount1')).toBe(false);
  });

  it('redacts the key and the SAS signature', () => {
    const key = createVaultCredentials({ endpoint: 'http://127.0.0.1:10000/devstoreaccount1', container: 'vault', now: NOW });
    const redacted = JSON.stringify(redactVaultCredentials(parseVaultCredentials(key, { now: NOW })));
    expect(redacted).not.toContain(AZURITE_ACCOUNT_KEY);
    expect(redacted).toContain('"authType":"AccountKey"');
    const sas = redactVaultCredentials(parseVaultCredentials(azureStyle, { now: NOW }));
    expect(sas.sas).toBe('sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2026-04-01T00:00:00Z&sig=REDACTED');
    expect(JSON.stringify(sas)).not.toContain('abc%2Bdef');
  });
});
