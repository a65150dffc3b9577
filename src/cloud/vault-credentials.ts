// The vault credentials file: XML modelled on Azure's `.VaultCredentials`, naming the vault, its storage
// endpoint and container, and how to authenticate. Parsed strictly (no DTDs, no entities, size-capped).
import { randomUUID } from 'node:crypto';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { systemClock } from '../clock.js';
import { StrataError } from '../errors.js';
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME } from './azurite-process.js';

export const VAULT_CREDENTIALS_ROOT = 'RSBackupVaultAADCreds';
/** Files larger than this are refused before parsing. */
export const VAULT_CREDENTIALS_MAX_BYTES = 64 * 1024;
const DAY_MS = 24 * 60 * 60 * 1000;

export type VaultAuth =
  /** Shared key: `accountName` is the storage account, `accountKey` its base64 key (a secret). */
  | { type: 'AccountKey'; accountName: string; accountKey: string }
  /** A SAS token (a secret), without the leading `?`. */
  | { type: 'Sas'; sasToken: string }
  /** Microsoft Entra ID: a service principal in a tenant; its secret is not in the file (see azure-store). */
  | { type: 'Entra'; tenantId: string; clientId: string };

export interface VaultCredentials {
  version: string;
  /** `ResourceName`: the vault's name. */
  vaultName: string;
  /** `VaultId`: a GUID identifying the vault (lower case). */
  vaultId: string;
  subscriptionId?: string;
  resourceType?: string;
  resourceGroup?: string;
  location?: string;
  aadTenantId?: string;
  servicePrincipalClientId?: string;
  /** The blob service URL, without a trailing `/` (for Azurite `http://127.0.0.1:PORT/devstoreaccount1`). */
  blobEndpoint: string;
  containerName: string;
  /** The storage account, when the file names one (always for AccountKey). */
  accountName?: string;
  auth: VaultAuth;
  validFrom: Date;
  validTo: Date;
}

/** What may be printed or logged: every field but the secrets. */
export interface RedactedVaultCredentials {
  vaultName: string;
  vaultId: string;
  subscriptionId?: string;
  resourceGroup?: string;
  location?: string;
  blobEndpoint: string;
  containerName: string;
  accountName?: string;
  authType: VaultAuth['type'];
  /** For SAS: its non-secret parameters (version, permissions, expiry), the signature removed. */
  sas?: string;
  tenantId?: string;
  clientId?: string;
  validFrom: string;
  validTo: string;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CONTAINER = /^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$/;
const ACCOUNT = /^[a-z0-9]{3,24}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function malformed(detail: string): StrataError {
  return new StrataError('STRATA_VAULT_CREDENTIALS_MALFORMED', `vault credentials file is malformed: ${detail}`, { kind: 'input' });
}

/**
 * Parses and validates a vault credentials file.
 * Throws StrataError STRATA_VAULT_CREDENTIALS_MALFORMED (one line naming every missing or invalid field)
 * for anything but a well-formed file with a `RSBackupVaultAADCreds` root; a DOCTYPE or ENTITY
 * declaration is refused outright, as is a file over 64 KiB. Throws STRATA_VAULT_CREDENTIALS_EXPIRED
 * when `now` (default: the system clock) is past `ValidTo`. Unknown elements (Azure's own) are ignored.
 */
export function parseVaultCredentials(xml: string, options: { now?: number | Date } = {}): VaultCredentials {
  if (Buffer.byteLength(xml, 'utf8') > VAULT_CREDENTIALS_MAX_BYTES) {
    throw malformed(`larger than ${VAULT_CREDENTIALS_MAX_BYTES / 1024} KiB`);
  }
  const text = xml.replace(/^\uFEFF/, '');
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw malformed('DOCTYPE and ENTITY declarations are not allowed');
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw malformed(`not well-formed XML (line ${valid.err.line}: ${valid.err.msg})`);
  const parser = new XMLParser({
    ignoreAttributes: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
    removeNSPrefix: true,
    parseTagValue: false,
    trimValues: true,
    processEntities: false,
    htmlEntities: false,
  });
  const doc = parser.parse(text) as Record<string, unknown>;
  const root = doc[VAULT_CREDENTIALS_ROOT];
  if (root === undefined || typeof root !== 'object' || root === null || Array.isArray(root)) {
    throw malformed(`the root element must be ${VAULT_CREDENTIALS_ROOT}`);
  }
  const fields = root as Record<string, unknown>;

  const missing: string[] = [];
  const invalid: string[] = [];
  const read = (name: string, required: boolean): string | undefined => {
    const value = fields[name];
    if (value === undefined || value === '') {
      if (required) missing.push(name);
      return undefined;
    }
    if (typeof value !== 'string') {
      invalid.push(`${name} (${Array.isArray(value) ? 'appears more than once' : 'must be text'})`);
      return undefined;
    }
    return decodeXmlText(value);
  };
  const check = (name: string, value: string | undefined, ok: (v: string) => boolean, rule: string): string | undefined => {
    if (value === undefined) return undefined;
    if (!ok(value)) {
      invalid.push(`${name} (${rule})`);
      return undefined;
    }
    return value;
  };
  const date = (name: string): Date | undefined => {
    const value = check(name, read(name, true), (v) => /^\d{4}-\d{2}-\d{2}T/.test(v) && Number.isFinite(Date.parse(v)), 'an ISO 8601 date and time');
    return value === undefined ? undefined : new Date(Date.parse(value));
  };

  const version = read('Version', true);
  const vaultName = read('ResourceName', true);
  const vaultId = check('VaultId', read('VaultId', true), (v) => GUID.test(v), 'a GUID');
  const subscriptionId = check('SubscriptionId', read('SubscriptionId', false), (v) => GUID.test(v), 'a GUID');
  const resourceType = read('ResourceType', false);
  const resourceGroup = read('ResourceGroup', false);
  const location = read('Location', false);
  const blobEndpoint = check('BlobEndpoint', read('BlobEndpoint', true), isAcceptableEndpoint, 'an https URL, or http on a loopback address');
  const containerName = check('ContainerName', read('ContainerName', true), (v) => CONTAINER.test(v), '3-63 lower-case letters, digits and single hyphens');
  const authType = check('AuthType', read('AuthType', true), (v) => v === 'AccountKey' || v === 'Sas' || v === 'Entra', 'AccountKey, Sas or Entra');
  const accountName = check('AccountName', read('AccountName', authType === 'AccountKey'), (v) => ACCOUNT.test(v), '3-24 lower-case letters and digits');
  const entra = authType === 'Entra';
  const aadTenantId = check('AadTenantId', read('AadTenantId', entra), (v) => GUID.test(v), 'a GUID');
  const servicePrincipalClientId = check('ServicePrincipalClientId', read('ServicePrincipalClientId', entra), (v) => GUID.test(v), 'a GUID');
  const validFrom = date('ValidFrom');
  const validTo = date('ValidTo');
  if (validFrom && validTo && validTo.getTime() <= validFrom.getTime()) invalid.push('ValidTo (must be after ValidFrom)');

  let auth: VaultAuth | undefined;
  if (authType === 'AccountKey') {
    const accountKey = check('AccountKey', read('AccountKey', true), (v) => BASE64.test(v) && Buffer.from(v, 'base64').length >= 16, 'a base64 key');
    if (accountName && accountKey) auth = { type: 'AccountKey', accountName, accountKey };
  } else if (authType === 'Sas') {
    const sasToken = check('SasToken', read('SasToken', true)?.replace(/^\?/, ''), (v) => /(^|&)sig=[^&]+/.test(v), 'a SAS token with a sig parameter');
    if (sasToken) auth = { type: 'Sas', sasToken };
  } else if (entra) {
    // Bearer tokens are never sent over plain http (the Azure SDK refuses to, and so do we, earlier).
    if (blobEndpoint?.startsWith('http:')) invalid.push('AuthType (Entra needs an https BlobEndpoint)');
    else if (aadTenantId && servicePrincipalClientId) auth = { type: 'Entra', tenantId: aadTenantId, clientId: servicePrincipalClientId };
  }

  if (missing.length > 0 || invalid.length > 0) {
    const parts = [];
    if (missing.length > 0) parts.push(`missing ${missing.join(', ')}`);
    if (invalid.length > 0) parts.push(`invalid ${invalid.join(', ')}`);
    throw malformed(parts.join('; '));
  }

  const creds: VaultCredentials = {
    version: version!,
    vaultName: vaultName!,
    vaultId: vaultId!.toLowerCase(),
    blobEndpoint: blobEndpoint!.replace(/\/+$/, ''),
    containerName: containerName!,
    auth: auth!,
    validFrom: validFrom!,
    validTo: validTo!,
  };
  if (subscriptionId) creds.subscriptionId = subscriptionId.toLowerCase();
  if (resourceType) creds.resourceType = resourceType;
  if (resourceGroup) creds.resourceGroup = resourceGroup;
  if (location) creds.location = location;
  if (aadTenantId) creds.aadTenantId = aadTenantId;
  if (servicePrincipalClientId) creds.servicePrincipalClientId = servicePrincipalClientId;
  if (accountName) creds.accountName = accountName;

  const now = toMs(options.now ?? systemClock.now());
  if (now > creds.validTo.getTime()) {
    throw new StrataError(
      'STRATA_VAULT_CREDENTIALS_EXPIRED',
      `vault credentials expired on ${creds.validTo.toISOString()}; download new vault credentials from the vault or create new ones with \`strata vault credentials create\``,
      { kind: 'input' },
    );
  }
  return creds;
}

export interface CreateVaultCredentialsOptions {
  /** The blob service URL. For an Azurite endpoint (path `/devstoreaccount1`) the account defaults to the emulator's. */
  endpoint: string;
  container: string;
  /** Default: from a path-style endpoint's first segment (`devstoreaccount1` for Azurite) or an `<account>.blob.…` host. */
  accountName?: string;
  /** At most one of accountKey, sas, entra; none means the Azurite key (only for an Azurite endpoint). */
  accountKey?: string;
  sas?: string;
  entra?: { tenantId: string; clientId: string };
  subscriptionId?: string;
  /** Default: `strata-<container>`. */
  vaultName?: string;
  /** Default: a new random GUID. */
  vaultId?: string;
  resourceGroup?: string;
  location?: string;
  /** How long the file stays valid, in days. Default 10. */
  validDays?: number;
  /** Default: the system clock. */
  now?: number | Date;
}

/**
 * Writes a vault credentials file. The result parses with `parseVaultCredentials` (it is validated
 * before being returned, so bad options throw STRATA_VAULT_CREDENTIALS_MALFORMED, or StrataError
 * kind 'usage' for contradictory options).
 */
export function createVaultCredentials(options: CreateVaultCredentialsOptions): string {
  let endpoint: URL;
  try {
    endpoint = new URL(options.endpoint);
    if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:') throw new Error('not http(s)');
  } catch {
    throw new StrataError(
      'STRATA_USAGE',
      `--endpoint ${JSON.stringify(options.endpoint)} is not a blob service URL; use https://ACCOUNT.blob.core.windows.net, or http://127.0.0.1:PORT/devstoreaccount1 for Azurite`,
      { kind: 'usage' },
    );
  }
  options = { ...options, endpoint: `${endpoint.origin}${endpoint.pathname}`.replace(/\/+$/, '') };
  const now = toMs(options.now ?? systemClock.now());
  const validDays = options.validDays ?? 10;
  if (!(validDays > 0 && validDays <= 3650)) {
    throw new StrataError('STRATA_USAGE', `--valid-days must be between 1 and 3650 (got ${validDays})`, { kind: 'usage' });
  }
  const given = [options.accountKey, options.sas, options.entra].filter((v) => v !== undefined).length;
  if (given > 1) throw new StrataError('STRATA_USAGE', 'give at most one of --account-key, --sas and --entra', { kind: 'usage' });
  const azurite = isAzuriteEndpoint(options.endpoint);
  const accountName = options.accountName ?? (azurite ? AZURITE_ACCOUNT_NAME : accountFromEndpoint(options.endpoint));
  let auth: VaultAuth;
  if (options.sas !== undefined) auth = { type: 'Sas', sasToken: options.sas.replace(/^\?/, '') };
  else if (options.entra !== undefined) auth = { type: 'Entra', tenantId: options.entra.tenantId, clientId: options.entra.clientId };
  else if (options.accountKey !== undefined || azurite) {
    if (!accountName) {
      throw new StrataError('STRATA_USAGE', `cannot tell the storage account from ${options.endpoint}; give --account-name`, { kind: 'usage' });
    }
    auth = { type: 'AccountKey', accountName, accountKey: options.accountKey ?? AZURITE_ACCOUNT_KEY };
  } else {
    throw new StrataError('STRATA_USAGE', 'give one of --account-key, --sas or --entra (only an Azurite endpoint has a default key)', { kind: 'usage' });
  }
  const creds: VaultCredentials = {
    version: '2.0',
    vaultName: options.vaultName ?? `strata-${options.container}`,
    vaultId: options.vaultId ?? randomUUID(),
    blobEndpoint: options.endpoint.replace(/\/+$/, ''),
    containerName: options.container,
    auth,
    validFrom: new Date(now),
    validTo: new Date(now + validDays * DAY_MS),
  };
  if (options.subscriptionId) creds.subscriptionId = options.subscriptionId;
  if (options.resourceGroup) creds.resourceGroup = options.resourceGroup;
  if (options.location) creds.location = options.location;
  if (accountName) creds.accountName = accountName;
  if (auth.type === 'Entra') {
    creds.aadTenantId = auth.tenantId;
    creds.servicePrincipalClientId = auth.clientId;
  }
  const xml = vaultCredentialsXml(creds);
  parseVaultCredentials(xml, { now });
  return xml;
}

/** Serializes credentials back to the file format (values XML-escaped). */
export function vaultCredentialsXml(creds: VaultCredentials): string {
  const elements: [string, string | undefined][] = [
    ['Version', creds.version],
    ['SubscriptionId', creds.subscriptionId],
    ['ResourceType', creds.resourceType ?? 'Microsoft.RecoveryServices/vaults'],
    ['ResourceName', creds.vaultName],
    ['ResourceGroup', creds.resourceGroup],
    ['Location', creds.location],
    ['AadTenantId', creds.aadTenantId],
    ['ServicePrincipalClientId', creds.servicePrincipalClientId],
    ['VaultId', creds.vaultId],
    ['BlobEndpoint', creds.blobEndpoint],
    ['ContainerName', creds.containerName],
    ['AuthType', creds.auth.type],
    ['AccountName', creds.accountName],
    ['AccountKey', creds.auth.type === 'AccountKey' ? creds.auth.accountKey : undefined],
    ['SasToken', creds.auth.type === 'Sas' ? creds.auth.sasToken : undefined],
    ['ValidFrom', creds.validFrom.toISOString()],
    ['ValidTo', creds.validTo.toISOString()],
  ];
  const body = elements
    .filter((e): e is [string, string] => e[1] !== undefined && e[1] !== '')
    .map(([name, value]) => `  <${name}>${escapeXmlText(value)}</${name}>`)
    .join('\n');
  return `<?xml version="1.0" encoding="utf-8"?>\n<${VAULT_CREDENTIALS_ROOT}>\n${body}\n</${VAULT_CREDENTIALS_ROOT}>\n`;
}

/** The credentials without their secrets: use this for anything printed, logged or sent to the console. */
export function redactVaultCredentials(creds: VaultCredentials): RedactedVaultCredentials {
  const out: RedactedVaultCredentials = {
    vaultName: creds.vaultName,
    vaultId: creds.vaultId,
    blobEndpoint: creds.blobEndpoint,
    containerName: creds.containerName,
    authType: creds.auth.type,
    validFrom: creds.validFrom.toISOString(),
    validTo: creds.validTo.toISOString(),
  };
  if (creds.subscriptionId) out.subscriptionId = creds.subscriptionId;
  if (creds.resourceGroup) out.resourceGroup = creds.resourceGroup;
  if (creds.location) out.location = creds.location;
  if (creds.accountName) out.accountName = creds.accountName;
  if (creds.auth.type === 'Sas') {
    out.sas = creds.auth.sasToken
      .split('&')
      .map((p) => (p.startsWith('sig=') ? 'sig=REDACTED' : p))
      .join('&');
  }
  if (creds.auth.type === 'Entra') {
    out.tenantId = creds.auth.tenantId;
    out.clientId = creds.auth.clientId;
  }
  return out;
}

/** True for an Azurite-style endpoint: a loopback host and the path `/devstoreaccount1`. */
export function isAzuriteEndpoint(endpoint: string): boolean {
  try {
    const url = new URL(endpoint);
    return isLoopback(url.hostname) && url.pathname.replace(/\/+$/, '') === `/${AZURITE_ACCOUNT_NAME}`;
  } catch {
    return false;
  }
}

function isAcceptableEndpoint(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.search || url.hash || url.username || url.password) return false;
  if (url.protocol === 'https:') return true;
  // Plain http would send the account key's signatures and the data in clear: only to an emulator on this machine.
  return url.protocol === 'http:' && isLoopback(url.hostname);
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || hostname === '::1' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** The account of a path-style URL (`http://host:port/<account>`, as emulators use) or of an `<account>.blob.…` host. */
function accountFromEndpoint(endpoint: string): string | undefined {
  try {
    const url = new URL(endpoint);
    const segment = url.pathname.split('/').filter(Boolean)[0];
    if (segment && ACCOUNT.test(segment)) return segment;
    const label = url.hostname.split('.')[0];
    return label && ACCOUNT.test(label) && !/^\d+$/.test(label) ? label : undefined;
  } catch {
    return undefined;
  }
}

function toMs(at: number | Date): number {
  return typeof at === 'number' ? at : at.getTime();
}

function escapeXmlText(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/**
 * Decodes the five predefined XML entities and character references. The parser runs with entity
 * processing off (so no declared entity can ever expand); this undoes only the escapes every XML
 * writer produces, such as `&amp;` in a SAS token. Each reference decodes to at most one character.
 */
function decodeXmlText(value: string): string {
  return value.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|lt|gt|amp|quot|apos);/g, (whole, ref: string) => {
    switch (ref) {
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'amp':
        return '&';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
    }
    const code = ref.startsWith('#x') ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}
