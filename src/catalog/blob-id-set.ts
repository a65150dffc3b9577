// A compact hash set of 32-byte blob ids: the dedup lookup of the backup hot path, held in memory
// so that deciding "is this chunk new?" never touches SQLite. ~64 bytes per id at most.

const ID = 32;
const WORDS = ID / 4;

export class BlobIdSet {
  #slots: Uint32Array; // WORDS words per slot; all-zero = empty (an all-zero id is kept aside)
  #mask: number;
  #size = 0;
  #hasZero = false;

  constructor(expected = 1024) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.#slots = new Uint32Array(cap * WORDS);
    this.#mask = cap - 1;
  }

  get size(): number {
    return this.#size + (this.#hasZero ? 1 : 0);
  }

  has(id: Uint8Array): boolean {
    const w = words(id);
    if (isZero(w)) return this.#hasZero;
    return this.#find(w) >= 0;
  }

  /** Adds `id`; returns false if it was already present. */
  add(id: Uint8Array): boolean {
    const w = words(id);
    if (isZero(w)) {
      const had = this.#hasZero;
      this.#hasZero = true;
      return !had;
    }
    if (this.#find(w) >= 0) return false;
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#grow();
    this.#insert(w);
    this.#size++;
    return true;
  }

  #find(w: Uint32Array): number {
    const slots = this.#slots;
    for (let i = w[0]! & this.#mask; ; i = (i + 1) & this.#mask) {
      const base = i * WORDS;
      if (slots[base] === 0 && slots[base + 1] === 0 && isZero(slots.subarray(base, base + WORDS))) return -1;
      let eq = true;
      for (let k = 0; k < WORDS; k++) {
        if (slots[base + k] !== w[k]) {
          eq = false;
          break;
        }
      }
      if (eq) return i;
    }
  }

  #insert(w: Uint32Array): void {
    const slots = this.#slots;
    for (let i = w[0]! & this.#mask; ; i = (i + 1) & this.#mask) {
      const base = i * WORDS;
      if (isZero(slots.subarray(base, base + WORDS))) {
        slots.set(w, base);
        return;
      }
    }
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Uint32Array(old.length * 2);
    this.#mask = this.#mask * 2 + 1;
    for (let base = 0; base < old.length; base += WORDS) {
      const w = old.subarray(base, base + WORDS);
      if (!isZero(w)) this.#insert(w);
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
