// A compact hash set of 32-byte blob ids: the dedup lookup of the backup hot path, held in memory
// so that deciding "is this chunk new?" never touches SQLite. ~64 bytes per id at most.
//
// The table lives in a SharedArrayBuffer so worker threads can consult it read-only (`sharedHas`)
// while the owning thread keeps adding to it: a reader may miss an id being added at that moment
// (a false "absent"), never report one that is not there. The owning thread stays the authority:
// `add` decides what is new.

const ID = 32;
const WORDS = ID / 4;

/** A read-only view of a set's table, for other threads. Replaced (not mutated in size) when the set grows. */
export interface SharedIdTable {
  slots: Uint32Array;
  /** Number of slots (any size: not a power of two). */
  capacity: number;
}

/**
 * The table is kept at most this full (linear probing stays short: ~6 probes for an absent id) and
 * grows by half when it would be fuller, so a large set's table is 1/0.7 to 1.5/0.7 × 32 bytes per
 * id (instead of doubling at half full: 2 to 4 × 32 bytes, and 3 × the old table while it grows).
 */
const MAX_LOAD = 0.7;
const GROWTH = 1.5;
const MIN_CAPACITY = 16;

export class BlobIdSet {
  #slots: Uint32Array; // WORDS words per slot; all-zero = empty (an all-zero id is kept aside)
  #capacity: number;
  #size = 0;
  #hasZero = false;
  #generation = 0;

  constructor(expected = 1024) {
    const cap = Math.max(MIN_CAPACITY, Math.ceil(expected / MAX_LOAD) + 1);
    this.#slots = sharedWords(cap * WORDS);
    this.#capacity = cap;
  }

  get size(): number {
    return this.#size + (this.#hasZero ? 1 : 0);
  }

  /** Bumped each time the table is replaced (on growth); a reader holding an older table should take `table()` again. */
  get generation(): number {
    return this.#generation;
  }

  /** The current table, for `sharedHas` in another thread. The all-zero id is not in it. */
  table(): SharedIdTable {
    return { slots: this.#slots, capacity: this.#capacity };
  }

  has(id: Uint8Array): boolean {
    const w = words(id);
    if (isZero(w)) return this.#hasZero;
    return find(this.#slots, this.#capacity, w) >= 0;
  }

  /** `has` for an id written in hex (64 digits); false for anything else. Allocates nothing. */
  hasHex(hex: string): boolean {
    if (hex.length !== ID * 2) return false;
    for (let i = 0; i < ID; i++) {
      const hi = hexDigit(hex.charCodeAt(2 * i));
      const lo = hexDigit(hex.charCodeAt(2 * i + 1));
      if (hi < 0 || lo < 0) return false;
      HEX_BYTES[i] = (hi << 4) | lo;
    }
    const w = HEX_WORDS;
    if (isZero(w)) return this.#hasZero;
    return find(this.#slots, this.#capacity, w) >= 0;
  }

  /** `has` for the 32 bytes of `buf` at `offset` (e.g. one id of a list stored back to back). Allocates nothing. */
  hasAt(buf: Uint8Array, offset: number): boolean {
    if (offset < 0 || offset + ID > buf.length) return false;
    HEX_BYTES.set(buf.subarray(offset, offset + ID));
    const w = HEX_WORDS;
    if (isZero(w)) return this.#hasZero;
    return find(this.#slots, this.#capacity, w) >= 0;
  }

  /** Adds `id`; returns false if it was already present. */
  add(id: Uint8Array): boolean {
    const w = words(id);
    if (isZero(w)) {
      const had = this.#hasZero;
      this.#hasZero = true;
      return !had;
    }
    if (find(this.#slots, this.#capacity, w) >= 0) return false;
    if (this.#size + 1 > this.#capacity * MAX_LOAD) this.#grow();
    insert(this.#slots, this.#capacity, w);
    this.#size++;
    return true;
  }

  /**
   * The set as bytes, for `fromSnapshot`: a header (format, table size, count) and the table itself,
   * in this machine's byte order (which the header records).
   */
  snapshot(): Buffer {
    return Buffer.concat(this.snapshotParts());
  }

  /**
   * `snapshot()` as its two parts, the header and a view of the table itself (not copied: write it out
   * before the set changes), so a large set is saved without a second copy of its table in memory.
   */
  snapshotParts(): [Buffer, Buffer] {
    const body = Buffer.from(this.#slots.buffer, this.#slots.byteOffset, this.#slots.byteLength);
    const header = Buffer.alloc(SNAPSHOT_HEADER);
    header.write(SNAPSHOT_MAGIC, 0, 'latin1');
    new Uint32Array(header.buffer, header.byteOffset + 8, 1)[0] = BYTE_ORDER;
    header.writeUInt32LE(this.#capacity, 12);
    header.writeUInt32LE(this.#size, 16);
    header.writeUInt32LE(this.#hasZero ? 1 : 0, 20);
    return [header, body];
  }

  /** A set from `snapshot()`'s bytes, or null when they are not one (another format or byte order, or inconsistent). */
  static fromSnapshot(data: Uint8Array): BlobIdSet | null {
    if (data.length < SNAPSHOT_HEADER) return null;
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (buf.toString('latin1', 0, 8) !== SNAPSHOT_MAGIC || buf.readUInt32LE(8) !== LE_OF_BYTE_ORDER) return null;
    const capacity = buf.readUInt32LE(12);
    const size = buf.readUInt32LE(16);
    const hasZero = buf.readUInt32LE(20);
    if (capacity < MIN_CAPACITY || hasZero > 1 || size > capacity * MAX_LOAD || buf.length !== SNAPSHOT_HEADER + capacity * ID) return null;
    const set = new BlobIdSet(0);
    const slots = sharedWords(capacity * WORDS);
    new Uint8Array(slots.buffer).set(buf.subarray(SNAPSHOT_HEADER));
    let used = 0;
    for (let base = 0; base < slots.length; base += WORDS) if (!emptyAt(slots, base)) used++;
    if (used !== size) return null;
    set.#slots = slots;
    set.#capacity = capacity;
    set.#size = size;
    set.#hasZero = hasZero === 1;
    return set;
  }

  #grow(): void {
    const old = this.#slots;
    const capacity = Math.ceil(this.#capacity * GROWTH);
    const slots = sharedWords(capacity * WORDS);
    for (let base = 0; base < old.length; base += WORDS) {
      if (!emptyAt(old, base)) insert(slots, capacity, old.subarray(base, base + WORDS));
    }
    this.#slots = slots;
    this.#capacity = capacity;
    this.#generation++;
  }
}

/**
 * Membership test against a table shared by a `BlobIdSet` in another thread. True only if `id` is in
 * the set; false if it is not, or is being added right now, or is the all-zero id.
 */
export function sharedHas(table: SharedIdTable, id: Uint8Array): boolean {
  const w = words(id);
  if (isZero(w)) return false;
  return find(table.slots, table.capacity, w) >= 0;
}

const SNAPSHOT_MAGIC = 'SIDSET01';
const SNAPSHOT_HEADER = 24;
/** Written as a native uint32: read back as little-endian, it says which byte order the table's words are in. */
const BYTE_ORDER = 0x01020304;
const LE_OF_BYTE_ORDER = new Uint8Array(new Uint32Array([BYTE_ORDER]).buffer)[0] === 0x04 ? BYTE_ORDER : 0x04030201;

const HEX_BYTES = new Uint8Array(ID);
const HEX_WORDS = new Uint32Array(HEX_BYTES.buffer);

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function sharedWords(n: number): Uint32Array {
  return new Uint32Array(new SharedArrayBuffer(n * 4));
}

/** The home slot of an id: ids are hashes, so their first word is uniform. */
function home(w0: number, capacity: number): number {
  return w0 % capacity;
}

function find(slots: Uint32Array, capacity: number, w: Uint32Array): number {
  const w0 = w[0]!;
  for (let i = home(w0, capacity); ; i = i + 1 === capacity ? 0 : i + 1) {
    const base = i * WORDS;
    const s0 = slots[base]!;
    if (s0 === w0) {
      let eq = true;
      for (let k = 1; k < WORDS; k++) {
        if (slots[base + k] !== w[k]) {
          eq = false;
          break;
        }
      }
      if (eq) return i;
    }
    if (s0 === 0 && emptyAt(slots, base)) return -1;
  }
}

function insert(slots: Uint32Array, capacity: number, w: Uint32Array): void {
  for (let i = home(w[0]!, capacity); ; i = i + 1 === capacity ? 0 : i + 1) {
    const base = i * WORDS;
    if (emptyAt(slots, base)) {
      // A reader in another thread may see this slot half-written: it then matches no id (all eight
      // words must match), so at worst that reader answers "absent" for the id being added.
      for (let k = WORDS - 1; k >= 0; k--) slots[base + k] = w[k]!;
      return;
    }
  }
}

function words(id: Uint8Array): Uint32Array {
  if (id.length !== ID) throw new Error(`blob id must be ${ID} bytes`);
  if (id.byteOffset % 4 === 0) return new Uint32Array(id.buffer, id.byteOffset, WORDS);
  return new Uint32Array(Uint8Array.from(id).buffer);
}

/** True when the slot at word `base` is empty (all zero). No view is made: this runs once per probe. */
function emptyAt(slots: Uint32Array, base: number): boolean {
  for (let k = 0; k < WORDS; k++) if (slots[base + k] !== 0) return false;
  return true;
}

function isZero(w: Uint32Array): boolean {
  for (let k = 0; k < w.length; k++) if (w[k] !== 0) return false;
  return true;
}
