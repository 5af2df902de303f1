export {
  type PostgresEnqueueTransaction,
  PostgresStore,
  type PostgresStoreOptions,
  type PostgresTransaction,
  type PruneOptions,
} from './stores/postgres/postgres-store.js';
