// The pack file format: sealed blobs back to back, then a sealed header listing them, then its length.
//
//   pack    = blob* header trailer
//   blob    = AES-256-GCM(encKey, payload, aad = blob id)          (nonce | ciphertext | tag)
//   header  = AES-256-GCM(encKey, entries, aad = "strata.pack.v1" | pack id)
//   entries = entry*, entry = type u8 | id [32] | offset u32 | length u32 | rawLength u32 | compression u8
//   trailer = header length u32 LE | magic "STP1"
//
// Every blob and the header are authenticated; the header is bound to the pack's id, so a renamed or
// swapped pack fails to open.
import { open, seal } from '../crypto/aead.js';
import { ID_BYTES } from '../crypto/hash.js';
import { IntegrityError } from '../errors.js';

export const enum BlobType {
  Data = 0,
  Tree = 1,
}

export const enum Compression {
  None = 0,
  Lz4 = 1,
}

export interface PackEntry {
  type: BlobType;
  id: Buffer;
  /** Offset of the sealed blob in the pack. */
  offset: number;
  /** Length of the sealed blob (payload + 28 bytes). */
  length: number;
  /** Length of the plaintext after decompression. */
  rawLength: number;
  compression: Compression;
}

export const ENTRY_BYTES = 1 + ID_BYTES + 4 + 4 + 4 + 1;
export const TRAILER_BYTES = 8;
const MAGIC = 0x31505453; // "STP1" little-endian
const HEADER_AAD_PREFIX = Buffer.from('strata.pack.v1');

export function headerAad(packId: Buffer): Buffer {
  return Buffer.concat([HEADER_AAD_PREFIX, packId]);
}

export function encodeEntries(entries: readonly PackEntry[]): Buffer {
  const out = Buffer.allocUnsafe(entries.length * ENTRY_BYTES);
  let o = 0;
  for (const e of entries) {
    out.writeUInt8(e.type, o);
    e.id.copy(out, o + 1);
    out.writeUInt32LE(e.offset, o + 33);
    out.writeUInt32LE(e.length, o + 37);
    out.writeUInt32LE(e.rawLength, o + 41);
    out.writeUInt8(e.compression, o + 45);
    o += ENTRY_BYTES;
  }
  return out;
}

/**
 * Checks header entries without decoding them: whole entries, known types and compressions, blobs back
 * to back from offset 0 covering exactly `dataLength` bytes. Returns how many there are; throws
 * IntegrityError (naming `what`) on anything else.
 */
export function validateEntries(buf: Buffer, dataLength: number, what: string): number {
  if (buf.length % ENTRY_BYTES !== 0) throw new IntegrityError(`${what}: header has a partial entry`);
  let expectedOffset = 0;
  for (let o = 0, i = 0; o < buf.length; o += ENTRY_BYTES, i++) {
    const offset = buf.readUInt32LE(o + 33);
    const length = buf.readUInt32LE(o + 37);
    if (buf[o]! > 1 || buf[o + 45]! > 1 || offset !== expectedOffset || length < 28 || offset + length > dataLength) {
      throw new IntegrityError(`${what}: header entry ${i} is inconsistent`);
    }
    expectedOffset += length;
  }
  if (expectedOffset !== dataLength) throw new IntegrityError(`${what}: header does not cover the pack's data`);
  return buf.length / ENTRY_BYTES;
}

/** The blob length the last of these (valid) entries ends at: the data length they cover. */
export function entriesEnd(buf: Buffer): number {
  const o = buf.length - ENTRY_BYTES;
  return o < 0 ? 0 : buf.readUInt32LE(o + 33) + buf.readUInt32LE(o + 37);
}

/** Parses header entries; throws IntegrityError on anything inconsistent with a pack of `dataLength` bytes of blobs. */
export function decodeEntries(buf: Buffer, dataLength: number, what: string): PackEntry[] {
  validateEntries(buf, dataLength, what);
  return validatedEntries(buf);
}

/** Decodes entries `validateEntries` has already accepted (no check of its own). */
export function validatedEntries(buf: Buffer): PackEntry[] {
  const entries = new Array<PackEntry>(buf.length / ENTRY_BYTES);
  for (let o = 0, i = 0; o < buf.length; o += ENTRY_BYTES, i++) {
    entries[i] = {
      type: buf[o]! as BlobType,
      id: Buffer.from(buf.subarray(o + 1, o + 33)),
      offset: buf.readUInt32LE(o + 33),
      length: buf.readUInt32LE(o + 37),
      rawLength: buf.readUInt32LE(o + 41),
      compression: buf[o + 45]! as Compression,
    };
  }
  return entries;
}

/** Builds the tail (sealed header + trailer) of a pack whose blobs are `entries`. */
export function packTail(encKey: Buffer, packId: Buffer, entries: readonly PackEntry[]): Buffer {
  const header = seal(encKey, encodeEntries(entries), headerAad(packId));
  const trailer = Buffer.allocUnsafe(TRAILER_BYTES);
  trailer.writeUInt32LE(header.length, 0);
  trailer.writeUInt32LE(MAGIC, 4);
  return Buffer.concat([header, trailer]);
}

/** Reads the header length from a pack's last 8 bytes. */
export function parseTrailer(trailer: Buffer, packSize: number, what: string): number {
  if (trailer.length !== TRAILER_BYTES || packSize < TRAILER_BYTES) throw new IntegrityError(`${what}: too short to be a pack`);
  if (trailer.readUInt32LE(4) !== MAGIC) throw new IntegrityError(`${what}: not a strata pack (bad trailer; truncated?)`);
  const headerLength = trailer.readUInt32LE(0);
  if (headerLength < 28 || headerLength + TRAILER_BYTES > packSize) throw new IntegrityError(`${what}: header length out of range (truncated?)`);
  return headerLength;
}

/** Decrypts and parses a whole pack's header. */
export function readPackHeader(encKey: Buffer, packId: Buffer, pack: Buffer, what: string): PackEntry[] {
  const { entries, dataLength } = openPackHeader(encKey, packId, pack, what);
  return decodeEntries(entries, dataLength, what);
}

/** Decrypts a whole pack's header: its entries as stored (not yet validated), and where the blobs end. */
export function openPackHeader(encKey: Buffer, packId: Buffer, pack: Buffer, what: string): { entries: Buffer; dataLength: number } {
  const headerLength = parseTrailer(pack.subarray(pack.length - TRAILER_BYTES), pack.length, what);
  const dataLength = pack.length - TRAILER_BYTES - headerLength;
  return { entries: open(encKey, pack.subarray(dataLength, pack.length - TRAILER_BYTES), headerAad(packId), `${what} header`), dataLength };
}
