// Index segments: for each pack, its blob list; sealed. They let a catalog be rebuilt from the pool alone.
//
//   plain = "STI1" | supersedes u32 | segment id[32]* | packs u32 | pack*
//   pack  = pack id[32] | size f64 | entries u32 | entry* (pack.ts entry format)
import { IntegrityError } from '../errors.js';
import { ENTRY_BYTES, encodeEntries, entriesEnd, validatedEntries, validateEntries, type PackEntry } from './pack.js';

export interface IndexedPack {
  id: Buffer;
  size: number;
  entries: PackEntry[];
}

export interface IndexSegment {
  /** Segments this one replaces (prune writes the new one, then deletes these). */
  supersedes: Buffer[];
  packs: IndexedPack[];
}

/** A segment's pack as stored: its entries validated, not decoded (for a reader that needs few of them, or later). */
export interface RawIndexedPack {
  id: Buffer;
  size: number;
  /** The pack's entries in pack.ts's entry format, validated (a view of the segment). */
  entries: Buffer;
}

export interface RawIndexSegment {
  supersedes: Buffer[];
  packs: RawIndexedPack[];
}

const MAGIC = Buffer.from('STI1');

export function encodeIndexSegment(seg: IndexSegment): Buffer {
  const parts: Buffer[] = [MAGIC];
  const u32 = (n: number) => {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(n);
    return b;
  };
  parts.push(u32(seg.supersedes.length), ...seg.supersedes, u32(seg.packs.length));
  for (const p of seg.packs) {
    const head = Buffer.allocUnsafe(32 + 8 + 4);
    p.id.copy(head, 0);
    head.writeDoubleLE(p.size, 32);
    head.writeUInt32LE(p.entries.length, 40);
    parts.push(head, encodeEntries(p.entries));
  }
  return Buffer.concat(parts);
}

export function decodeIndexSegment(buf: Buffer, what: string): IndexSegment {
  const raw = decodeIndexSegmentRaw(buf, what);
  return {
    supersedes: raw.supersedes,
    packs: raw.packs.map((p) => ({ id: p.id, size: p.size, entries: validatedEntries(p.entries) })),
  };
}

/** Parses and validates a segment as decodeIndexSegment does, leaving each pack's entries undecoded. */
export function decodeIndexSegmentRaw(buf: Buffer, what: string): RawIndexSegment {
  const fail = (why: string): never => {
    throw new IntegrityError(`${what}: ${why}`);
  };
  if (buf.length < 12 || !buf.subarray(0, 4).equals(MAGIC)) fail('not an index segment');
  let o = 4;
  const need = (n: number) => {
    if (o + n > buf.length) fail('truncated');
  };
  need(4);
  const nSup = buf.readUInt32LE(o);
  o += 4;
  need(nSup * 32);
  const supersedes: Buffer[] = [];
  for (let i = 0; i < nSup; i++, o += 32) supersedes.push(Buffer.from(buf.subarray(o, o + 32)));
  need(4);
  const nPacks = buf.readUInt32LE(o);
  o += 4;
  const packs: RawIndexedPack[] = [];
  for (let i = 0; i < nPacks; i++) {
    need(44);
    const id = Buffer.from(buf.subarray(o, o + 32));
    const size = buf.readDoubleLE(o + 32);
    const n = buf.readUInt32LE(o + 40);
    o += 44;
    need(n * ENTRY_BYTES);
    const entries = buf.subarray(o, o + n * ENTRY_BYTES);
    o += n * ENTRY_BYTES;
    validateEntries(entries, entriesEnd(entries), `${what} pack ${id.toString('hex').slice(0, 12)}`);
    packs.push({ id, size, entries });
  }
  if (o !== buf.length) fail('trailing bytes');
  return { supersedes, packs };
}
