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
  mask: number;
}

export class BlobIdSet {
  #slots: Uint32Array; // WORDS words per slot; all-zero = empty (an all-zero id is kept aside)
  #mask: number;
  #size = 0;
  #hasZero = false;
  #generation = 0;

  constructor(expected = 1024) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.#slots = sharedWords(cap * WORDS);
    this.#mask = cap - 1;
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
    return { slots: this.#slots, mask: this.#mask };
  }

  has(id: Uint8Array): boolean {
    const w = words(id);
    if (isZero(w)) return this.#hasZero;
    return find(this.#slots, this.#mask, w) >= 0;
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
    return find(this.#slots, this.#mask, w) >= 0;
  }

  /** `has` for the 32 bytes of `buf` at `offset` (e.g. one id of a list stored back to back). Allocates nothing. */
  hasAt(buf: Uint8Array, offset: number): boolean {
    if (offset < 0 || offset + ID > buf.length) return false;
    HEX_BYTES.set(buf.subarray(offset, offset + ID));
    const w = HEX_WORDS;
    if (isZero(w)) return this.#hasZero;
    return find(this.#slots, this.#mask, w) >= 0;
  }

  /** Adds `id`; returns false if it was already present. */
  add(id: Uint8Array): boolean {
    const w = words(id);
    if (isZero(w)) {
      const had = this.#hasZero;
      this.#hasZero = true;
      return !had;
    }
    if (find(this.#slots, this.#mask, w) >= 0) return false;
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#grow();
    insert(this.#slots, this.#mask, w);
    this.#size++;
    return true;
  }

  #grow(): void {
    const old = this.#slots;
    const slots = sharedWords(old.length * 2);
    const mask = this.#mask * 2 + 1;
    for (let base = 0; base < old.length; base += WORDS) {
      const w = old.subarray(base, base + WORDS);
      if (!isZero(w)) insert(slots, mask, w);
    }
    this.#slots = slots;
    this.#mask = mask;
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
  return find(table.slots, table.mask, w) >= 0;
}

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

function find(slots: Uint32Array, mask: number, w: Uint32Array): number {
  const w0 = w[0]!;
  for (let i = w0 & mask; ; i = (i + 1) & mask) {
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
    if (s0 === 0 && isZero(slots.subarray(base, base + WORDS))) return -1;
  }
}

function insert(slots: Uint32Array, mask: number, w: Uint32Array): void {
  for (let i = w[0]! & mask; ; i = (i + 1) & mask) {
    const base = i * WORDS;
    if (isZero(slots.subarray(base, base + WORDS))) {
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

function isZero(w: Uint32Array): boolean {
  for (let k = 0; k < w.length; k++) if (w[k] !== 0) return false;
  return true;
}
