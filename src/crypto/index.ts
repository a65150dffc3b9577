// crypto: passphrase policy, key slots, AEAD, keyed blob ids, the chunker's keyed gear table.
export * from './aead.js';
export * from './hash.js';
export * from './keys.js';
export * from './passphrase.js';
