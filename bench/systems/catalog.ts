/**
 * The systems the benchmark compares, as plain data: the parent process
 * schedules and reports with this file alone, and each child loads only the
 * adapter of the system it measures.
 */

export type SystemKind = 'vouch-sqlite' | 'vouch-postgres' | 'bullmq-redis' | 'bullmq-postgres' | 'pg-boss' | 'graphile-worker';
export type Runtime = 'node20' | 'node22';
export type Mode = 'defaults' | 'tuned';

export interface SystemSpec {
  /** Stable id used in file names, logs and the results. */
  id: string;
  kind: SystemKind;
  mode: Mode;
  runtime: Runtime;
  /** Where its jobs live. */
  store: 'sqlite' | 'postgres' | 'redis';
  vouch: boolean;
  /** The name in tables. */
  label: string;
}

export const POSTGRES = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' } as const;
export const POSTGRES_URL = `postgres://${POSTGRES.user}@${POSTGRES.host}:${POSTGRES.port}/${POSTGRES.database}`;
export const REDIS = { host: '127.0.0.1', port: 6379 } as const;
/** Each system gets its own schema (or Redis key prefix), dropped and recreated before every measurement. */
export const SCHEMAS = {
  'vouch-postgres': 'bench_vouch',
  'bullmq-postgres': 'bench_bullmq',
  'bullmq-redis': 'vouchbench',
  'pg-boss': 'bench_pgboss',
  'graphile-worker': 'bench_graphile',
} as const;
export const QUEUE = 'bench';

function spec(kind: SystemKind, mode: Mode, runtime: Runtime, modeLabel: string): SystemSpec {
  const store = kind === 'vouch-sqlite' ? 'sqlite' : kind === 'bullmq-redis' ? 'redis' : 'postgres';
  const vouch = kind.startsWith('vouch');
  const suffix = [modeLabel, vouch && runtime === 'node20' ? 'Node 20' : ''].filter(Boolean).join(', ');
  const names: Record<SystemKind, string> = {
    'vouch-sqlite': 'vouch SQLite',
    'vouch-postgres': 'vouch PostgreSQL',
    'bullmq-redis': 'BullMQ Redis',
    'bullmq-postgres': 'BullMQ PostgreSQL',
    'pg-boss': 'pg-boss',
    'graphile-worker': 'graphile-worker',
  };
  return {
    id: `${kind}-${mode}-${runtime}`,
    kind,
    mode,
    runtime,
    store,
    vouch,
    label: suffix ? `${names[kind]} (${suffix})` : names[kind],
  };
}

/** Every system and mode, in the round-robin order of the first repetition. */
export function allSystems(options: { vouchPostgres: boolean }): SystemSpec[] {
  const systems = [
    spec('vouch-sqlite', 'defaults', 'node22', ''),
    spec('vouch-sqlite', 'defaults', 'node20', ''),
    ...(options.vouchPostgres ? [spec('vouch-postgres', 'defaults', 'node22', ''), spec('vouch-postgres', 'defaults', 'node20', '')] : []),
    spec('bullmq-redis', 'defaults', 'node22', ''),
    spec('bullmq-postgres', 'defaults', 'node22', ''),
    spec('pg-boss', 'defaults', 'node22', 'defaults'),
    spec('pg-boss', 'tuned', 'node22', 'tuned'),
    spec('graphile-worker', 'defaults', 'node22', 'defaults'),
    spec('graphile-worker', 'tuned', 'node22', 'batched'),
  ];
  return systems;
}
