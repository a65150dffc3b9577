import { describe, expect, it } from 'vitest';
import { open, seal } from './aead.js';
import { blobId, blobIdParts, gearTable } from './hash.js';
import { createKeySlot, generateMasterKeys, openKeySlot } from './keys.js';
import { generatePassphrase, validatePassphrase } from './passphrase.js';

const FAST = { N: 2 ** 10, r: 8, p: 1 };

describe('passphrase policy', () => {
  it.each([
    ['', 'STRATA_PASSPHRASE_WEAK'],
    ['fifteen-chars!!', 'STRATA_PASSPHRASE_WEAK'],
    ['sixteen chars ok\u00e9', 'STRATA_PASSPHRASE_WEAK'],
    ['tab\there-and-long-enough', 'STRATA_PASSPHRASE_WEAK'],
  ])('refuses %j', (p, code) => {
    expect(() => validatePassphrase(p)).toThrow(expect.objectContaining({ code }));
  });
  it('accepts 16 printable ASCII characters', () => {
    expect(() => validatePassphrase('sixteen chars ok')).not.toThrow();
  });
  it('generates passphrases that pass the policy and differ', () => {
    const a = generatePassphrase();
    validatePassphrase(a);
    expect(a).not.toBe(generatePassphrase());
    expect(a.length).toBeGreaterThanOrEqual(29);
  });
});

describe('AEAD', () => {
  const key = Buffer.alloc(32, 7);
  it('round-trips and binds the associated data', () => {
    const sealed = seal(key, Buffer.from('secret'), Buffer.from('id-1'));
    expect(open(key, sealed, Buffer.from('id-1')).toString()).toBe('secret');
    expect(() => open(key, sealed, Buffer.from('id-2'))).toThrow(/authentication/);
  });
  it('detects any flipped byte', () => {
    const sealed = seal(key, Buffer.from('some plaintext here'), Buffer.from('a'));
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i]! ^= 1;
      expect(() => open(key, bad, Buffer.from('a'))).toThrow();
    }
  });
});

describe('key slots', () => {
  it('wrap the master keys; the right passphrase opens, a wrong one does not', async () => {
    const keys = generateMasterKeys();
    const slot = await createKeySlot(keys, 'correct horse battery', { params: FAST, host: 'h', now: 0 });
    const opened = await openKeySlot(slot, 'correct horse battery');
    expect(opened?.encKey.equals(keys.encKey)).toBe(true);
    expect(opened?.idKey.equals(keys.idKey)).toBe(true);
    expect(await openKeySlot(slot, 'wrong horse battery!!')).toBeNull();
    expect(JSON.stringify(slot)).not.toContain(keys.encKey.toString('base64'));
  });
});

describe('keyed hashes', () => {
  it('blob ids depend on the key and the data', () => {
    const data = Buffer.from('hello');
    const a = blobId(Buffer.alloc(32, 1), data);
    expect(a.length).toBe(32);
    expect(a.equals(blobId(Buffer.alloc(32, 1), data))).toBe(true);
    expect(a.equals(blobId(Buffer.alloc(32, 2), data))).toBe(false);
  });
  it('blob ids are BLAKE3 keyed hashes (the official test vectors), however calls with other keys interleave', () => {
    const key = Buffer.from('whats the Elvish word for friend');
    const input = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));
    const vectors: [number, string][] = [
      [0, '92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26'],
      [1024, '75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4'],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [n, want] of vectors) {
        expect(blobId(key, input(n)).toString('hex')).toBe(want);
        blobId(Buffer.alloc(32, round), input(n + 7)); // another key in between: the reused hasher must switch back
      }
    }
    expect(blobIdParts(key, [input(1024).subarray(0, 100), input(1024).subarray(100)]).toString('hex')).toBe(vectors[1]![1]);
  });
  it('gear tables depend on the key', () => {
    const a = gearTable(Buffer.alloc(32, 1));
    expect(a.length).toBe(256);
    expect(a).toEqual(gearTable(Buffer.alloc(32, 1)));
    expect(a).not.toEqual(gearTable(Buffer.alloc(32, 2)));
  });
});
