export { SqliteStore, type SqliteStoreOptions, type SqliteTransaction } from './stores/sqlite/sqlite-store.js';
