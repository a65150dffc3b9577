// catalog: the local SQLite catalog (better-sqlite3, WAL): a rebuildable cache of the pool and the vault, plus jobs and state.
export * from './blob-id-set.js';
export * from './catalog.js';
export * from './file-cache.js';
