// Hostile input: property-based tests (fast-check) of every parser that reads bytes strata did not
// just write. Each must end in a clear, typed error (never a crash, a hang, or a silent acceptance of
// something unsafe).
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/commands.js';
import type { Io } from '../../src/cli/invocation.js';
import { parseVaultCredentials, createVaultCredentials } from '../../src/cloud/vault-credentials.js';
import { validateConfig } from '../../src/config/schema.js';
import { open, seal } from '../../src/crypto/aead.js';
import { StrataError } from '../../src/errors.js';
import { decodeIndexSegment, encodeIndexSegment } from '../../src/replica/index-segment.js';
import { decodeManifest } from '../../src/replica/manifest.js';
import { decodeEntries, packTail, readPackHeader } from '../../src/replica/pack.js';
import { decodeTree, encodeTree, isSafeName } from '../../src/replica/tree.js';

const RUNS = { numRuns: 300 };
const key = Buffer.alloc(32, 9);
const packId = Buffer.alloc(32, 3);

function typed(fn: () => unknown): 'ok' | string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof StrataError) return err.code;
    throw err; // anything else is a bug: the property fails
  }
}

describe('pack and header parser', () => {
  const entry = fc.record({
    type: fc.constantFrom(0, 1),
    id: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a)),
    length: fc.integer({ min: 28, max: 5000 }),
    rawLength: fc.integer({ min: 0, max: 100000 }),
    compression: fc.constantFrom(0, 1),
  });

  it('random bytes are refused with STRATA_INTEGRITY', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => {
        const r = typed(() => readPackHeader(key, packId, Buffer.from(bytes), 'pack'));
        expect(r).toBe('STRATA_INTEGRITY');
      }),
      RUNS,
    );
  });

  it('a valid pack with any byte flipped or truncated anywhere is refused', () => {
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 20 }), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.boolean(), (entries, pos, mask, truncate) => {
        let offset = 0;
        const es = entries.map((e) => {
          const x = { ...e, offset };
          offset += e.length;
          return x;
        });
        const pack = Buffer.concat([Buffer.alloc(offset), packTail(key, packId, es)]);
        expect(readPackHeader(key, packId, pack, 'pack')).toHaveLength(es.length);
        const headerStart = offset;
        const p = headerStart + (pos % (pack.length - headerStart));
        const bad = truncate ? pack.subarray(0, p) : Buffer.from(pack);
        if (!truncate) bad[p]! ^= mask;
        expect(typed(() => readPackHeader(key, packId, bad, 'pack'))).toBe('STRATA_INTEGRITY');
      }),
      RUNS,
    );
  });

  it('header entries that do not tile the pack are refused', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 46 * 8 }), fc.nat({ max: 1 << 20 }), (bytes, dataLength) => {
        const r = typed(() => decodeEntries(Buffer.from(bytes), dataLength, 'pack'));
        expect(['ok', 'STRATA_INTEGRITY']).toContain(r);
      }),
      RUNS,
    );
  });
});

describe('index segments', () => {
  it('random and mutated segments are refused, never misread', () => {
    const valid = encodeIndexSegment({
      supersedes: [Buffer.alloc(32, 1)],
      packs: [{ id: Buffer.alloc(32, 2), size: 200, entries: [{ type: 0, id: Buffer.alloc(32, 5), offset: 0, length: 100, rawLength: 72, compression: 0 }, { type: 1, id: Buffer.alloc(32, 6), offset: 100, length: 60, rawLength: 32, compression: 1 }] }],
    });
    expect(decodeIndexSegment(valid, 'i').packs[0]!.entries).toHaveLength(2);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        expect(['ok', 'STRATA_INTEGRITY']).toContain(typed(() => decodeIndexSegment(Buffer.from(bytes), 'i')));
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.nat({ max: valid.length - 1 }), fc.boolean(), (pos, cut) => {
        const bad = cut ? valid.subarray(0, pos) : Buffer.concat([valid, Buffer.from([pos & 255])]);
        expect(typed(() => decodeIndexSegment(bad, 'i'))).toBe('STRATA_INTEGRITY');
      }),
      RUNS,
    );
  });
});

describe('trees and manifests', () => {
  const name = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('..', '.', '', 'a/b', '../x', '/etc', 'a\u0000b', 'ok.txt'));
  const node = fc.record(
    {
      name,
      type: fc.constantFrom('file', 'dir', 'symlink', 'fifo', 7),
      mode: fc.oneof(fc.nat({ max: 0o7777 }), fc.constant(-1), fc.constant('x')),
      uid: fc.nat(),
      gid: fc.nat(),
      mtimeNs: fc.oneof(fc.bigInt({ min: 0n, max: 10n ** 19n }).map(String), fc.constant('nope')),
      size: fc.nat(),
      content: fc.array(fc.oneof(fc.constant('0'.repeat(64)), fc.string({ maxLength: 70 })), { maxLength: 3 }),
      subtree: fc.oneof(fc.constant('f'.repeat(64)), fc.string()),
      target: fc.string({ maxLength: 20 }),
      linkGroup: fc.oneof(fc.constant('a/b'), fc.constant('../escape'), fc.string({ maxLength: 10 })),
    },
    { requiredKeys: ['name', 'type'] },
  );

  it('a decoded tree never holds a name that could escape the target', () => {
    fc.assert(
      fc.property(fc.array(node, { maxLength: 6 }), (nodes) => {
        const buf = Buffer.from(JSON.stringify({ v: 1, nodes }));
        let tree;
        try {
          tree = decodeTree(buf, 't');
        } catch (err) {
          expect(err).toBeInstanceOf(StrataError);
          expect((err as StrataError).code).toBe('STRATA_INTEGRITY');
          return;
        }
        for (const n of tree.nodes) {
          expect(isSafeName(n.name)).toBe(true);
          if (n.linkGroup !== undefined) for (const part of n.linkGroup.split('/')) expect(isSafeName(part)).toBe(true);
        }
        expect(new Set(tree.nodes.map((n) => n.name)).size).toBe(tree.nodes.length);
      }),
      RUNS,
    );
  });

  it('random bytes are not trees or manifests', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(['ok', 'STRATA_INTEGRITY']).toContain(typed(() => decodeTree(Buffer.from(bytes), 't')));
        expect(['ok', 'STRATA_INTEGRITY']).toContain(typed(() => decodeManifest(Buffer.from(bytes), 'm')));
      }),
      RUNS,
    );
  });

  it('encode/decode round-trips safe trees', () => {
    const safe = fc.string({ minLength: 1, maxLength: 10 }).filter(isSafeName);
    fc.assert(
      fc.property(fc.uniqueArray(safe, { maxLength: 8 }), (names) => {
        const tree = { nodes: names.map((n) => ({ name: n, type: 'symlink' as const, mode: 0o777, uid: 0, gid: 0, mtimeNs: '1', target: 'x' })) };
        expect(decodeTree(encodeTree(tree), 't').nodes.map((n) => n.name)).toEqual([...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
      }),
      RUNS,
    );
  });

  it('sealed objects reject any change', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (plain, pos, mask) => {
        const sealed = seal(key, plain, Buffer.from('aad'));
        const bad = Buffer.from(sealed);
        bad[pos % bad.length]! ^= mask;
        expect(typed(() => open(key, bad, Buffer.from('aad')))).toBe('STRATA_INTEGRITY');
      }),
      RUNS,
    );
  });
});

describe('vault credentials', () => {
  it('arbitrary text is refused with a vault-credentials error', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 2000 }), (xml) => {
        expect(['STRATA_VAULT_CREDENTIALS_MALFORMED', 'STRATA_VAULT_CREDENTIALS_EXPIRED']).toContain(typed(() => parseVaultCredentials(xml)));
      }),
      RUNS,
    );
  });

  it('entity bombs and oversized files are refused fast', () => {
    const bomb = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><RSBackupVaultAADCreds><ResourceName>&lol3;</ResourceName></RSBackupVaultAADCreds>`;
    const t0 = Date.now();
    expect(typed(() => parseVaultCredentials(bomb))).toBe('STRATA_VAULT_CREDENTIALS_MALFORMED');
    const big = createVaultCredentials({ endpoint: 'http://127.0.0.1:1/devstoreaccount1', container: 'vault' }).replace('</RSBackupVaultAADCreds>', `<Pad>${'x'.repeat(70_000)}</Pad></RSBackupVaultAADCreds>`);
    expect(typed(() => parseVaultCredentials(big))).toBe('STRATA_VAULT_CREDENTIALS_MALFORMED');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('a valid file with any one element removed names what is missing', () => {
    const xml = createVaultCredentials({ endpoint: 'http://127.0.0.1:1/devstoreaccount1', container: 'vault' });
    const elements = [...xml.matchAll(/<(\w+)>[^<]*<\/\1>/g)].map((m) => m[1]!);
    for (const el of ['BlobEndpoint', 'ContainerName', 'ValidTo', 'VaultId']) {
      expect(elements).toContain(el);
      const without = xml.replace(new RegExp(`<${el}>[^<]*</${el}>`), '');
      expect(() => parseVaultCredentials(without)).toThrow(new RegExp(el));
    }
  });
});

describe('config', () => {
  it('arbitrary JSON is either a valid config or one STRATA_CONFIG_INVALID line', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (raw) => {
        let code = 'ok';
        try {
          validateConfig(raw, '/tmp/x.json');
        } catch (err) {
          expect(err).toBeInstanceOf(StrataError);
          code = (err as StrataError).code;
          expect((err as Error).message.includes('\n')).toBe(false);
        }
        expect(['ok', 'STRATA_CONFIG_INVALID']).toContain(code);
      }),
      RUNS,
    );
  });
});

describe('CLI arguments', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'strata-hostile-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('any argument vector ends in a documented exit code, never an exception', async () => {
    const word = fc.constantFrom(
      'init', 'backup', 'restore', 'check', 'recovery-points', 'catalog', 'rebuild', 'passphrase', 'change', 'register', 'cloud', 'status', 'vault', 'credentials', 'create',
      '--json', '--help', '--read-data', '--cloud', '--from', 'disk', 'cloud', 'nowhere', '--on-conflict', 'copy', 'explode', '--target', '--item', '../..', '--path', '--to', 'both',
      '--config', '--endpoint', 'http://127.0.0.1:1/devstoreaccount1', '--container', 'c', '--valid-days', '-5', 'latest', 'abcdef', '\u0000', '',
    );
    await fc.assert(
      fc.asyncProperty(fc.array(word, { maxLength: 7 }), async (args) => {
        // Every path the CLI could write to is inside the temp dir; the config does not exist.
        const argv = args.map((a) => (a === '../..' ? path.join(dir, 'item') : a));
        const out: string[] = [];
        const io: Io = { out: (s) => out.push(s), err: (s) => out.push(s), tty: false };
        const code = await main([...argv, '--config', path.join(dir, 'missing.json'), '--out', path.join(dir, 'out.xml')], io);
        expect([0, 1, 2, 3]).toContain(code);
        if (code !== 0) expect(out.join('\n')).not.toMatch(/at .*\.js:\d+/); // no stack traces for the user
      }),
      { numRuns: 150 },
    );
  });
});
