// Master keys and passphrase-protected key slots (scrypt + AES-256-GCM).
import { randomBytes, scrypt as scryptCb, type ScryptOptions } from 'node:crypto';
import { StrataError } from '../errors.js';
import { open, seal } from './aead.js';

/** The random keys of a pool. They never leave the server except wrapped in a key slot. */
export interface MasterKeys {
  /** AES-256-GCM key for blobs, pack headers, index segments and manifests. */
  encKey: Buffer;
  /** Key for the keyed BLAKE3 blob ids. */
  idKey: Buffer;
  /** Key the chunker's gear table is derived from. */
  chunkerKey: Buffer;
}

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** ~64 MiB and ~0.2 s here: slows a guessing attack without making `strata` feel slow. */
export const DEFAULT_SCRYPT: ScryptParams = { N: 2 ** 16, r: 8, p: 1 };

export interface KeySlot {
  version: 1;
  kdf: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string; // base64
  created: string; // ISO
  host: string;
  /** base64 of AES-256-GCM(KEK, JSON of the master keys), AAD "strata.keyslot.v1". */
  data: string;
}

const SLOT_AAD = Buffer.from('strata.keyslot.v1');

export function generateMasterKeys(): MasterKeys {
  return { encKey: randomBytes(32), idKey: randomBytes(32), chunkerKey: randomBytes(32) };
}

/** A slot's scrypt salt and parameters, or null when they are not a derivation this code would run. */
function slotKdf(slot: KeySlot): { salt: Buffer; params: ScryptParams } | null {
  if (slot.kdf !== 'scrypt' || typeof slot.salt !== 'string' || !(slot.N > 1 && slot.N <= 2 ** 22)) return null;
  return { salt: Buffer.from(slot.salt, 'base64'), params: { N: slot.N, r: slot.r, p: slot.p } };
}

/**
 * Key derivations started ahead of their use (deriveSlotKeyAhead), by parameters, salt and passphrase;
 * each is taken by the first `scrypt` call it fits, once.
 */
const ahead = new Map<string, Promise<Buffer>>();

function aheadKey(passphrase: string, salt: Buffer, params: ScryptParams): string {
  return `${params.N}:${params.r}:${params.p}:${salt.toString('base64')}:${passphrase}`;
}

/**
 * Starts deriving the key that opens `slot` with `passphrase` now (scrypt, on libuv's thread pool), so
 * that opening the pool later finds it done or under way (the CLI's early start, before the command's
 * modules load). Nothing is decided here: a wrong passphrase or a damaged slot is found by openKeySlot.
 */
export function deriveSlotKeyAhead(slot: KeySlot, passphrase: string): void {
  const kdf = slotKdf(slot);
  if (!kdf) return;
  const { salt, params } = kdf;
  const key = aheadKey(passphrase, salt, params);
  if (ahead.has(key)) return;
  const derived = runScrypt(passphrase, salt, params);
  derived.catch(() => {}); // reported to whoever takes it
  ahead.set(key, derived);
}

/** Derivations started ahead and not taken yet. */
export function keysDerivingAhead(): number {
  return ahead.size;
}

function scrypt(passphrase: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const key = aheadKey(passphrase, salt, params);
  const early = ahead.get(key);
  if (early) {
    ahead.delete(key);
    return early;
  }
  return runScrypt(passphrase, salt, params);
}

function runScrypt(passphrase: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 16 * 1024 * 1024 };
  return new Promise((resolve, reject) => scryptCb(passphrase, salt, 32, options, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function createKeySlot(keys: MasterKeys, passphrase: string, options: { params?: ScryptParams; host: string; now: number }): Promise<KeySlot> {
  const params = options.params ?? DEFAULT_SCRYPT;
  const salt = randomBytes(32);
  const kek = await scrypt(passphrase, salt, params);
  const plain = Buffer.from(
    JSON.stringify({ encKey: keys.encKey.toString('base64'), idKey: keys.idKey.toString('base64'), chunkerKey: keys.chunkerKey.toString('base64') }),
  );
  return {
    version: 1,
    kdf: 'scrypt',
    N: params.N,
    r: params.r,
    p: params.p,
    salt: salt.toString('base64'),
    created: new Date(options.now).toISOString(),
    host: options.host,
    data: seal(kek, plain, SLOT_AAD).toString('base64'),
  };
}

/** Unwraps a slot; returns null when the passphrase does not open it. Throws on a malformed slot. */
export async function openKeySlot(slot: KeySlot, passphrase: string): Promise<MasterKeys | null> {
  const kdf = slotKdf(slot);
  if (!kdf || typeof slot.data !== 'string') throw new StrataError('STRATA_KEY_SLOT_INVALID', 'key slot is malformed');
  const kek = await scrypt(passphrase, kdf.salt, kdf.params);
  let plain: Buffer;
  try {
    plain = open(kek, Buffer.from(slot.data, 'base64'), SLOT_AAD, 'key slot');
  } catch {
    return null;
  }
  const parsed = JSON.parse(plain.toString('utf8')) as Record<string, string>;
  const keys = {
    encKey: Buffer.from(parsed['encKey'] ?? '', 'base64'),
    idKey: Buffer.from(parsed['idKey'] ?? '', 'base64'),
    chunkerKey: Buffer.from(parsed['chunkerKey'] ?? '', 'base64'),
  };
  if (keys.encKey.length !== 32 || keys.idKey.length !== 32 || keys.chunkerKey.length !== 32) {
    throw new StrataError('STRATA_KEY_SLOT_INVALID', 'key slot holds keys of the wrong size');
  }
  return keys;
}

export function parseKeySlot(data: Buffer, name: string): KeySlot {
  try {
    const slot = JSON.parse(data.toString('utf8')) as KeySlot;
    if (slot.version !== 1) throw new Error(`unknown key slot version ${String(slot.version)}`);
    return slot;
  } catch (err) {
    throw new StrataError('STRATA_KEY_SLOT_INVALID', `key slot ${name} is damaged: ${(err as Error).message}`, { cause: err });
  }
}
