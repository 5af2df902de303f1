import type { Database } from 'better-sqlite3';

/**
 * Versioned schema changes, applied in order and never edited once released:
 * a change to the schema is a new entry at the end.
 */
export const MIGRATIONS: readonly { version: number; description: string; sql: string }[] = [
  {
    version: 1,
    description: 'jobs, attempts and the effect ledger',
    sql: `
      CREATE TABLE vouch_jobs (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        queue TEXT NOT NULL,
        key TEXT,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('scheduled', 'available', 'running', 'retryable', 'completed', 'failed', 'cancelled')),
        priority INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        lease_ms INTEGER NOT NULL,
        run_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        finished_at INTEGER,
        dedup_window_ms INTEGER NOT NULL,
        result TEXT,
        last_error TEXT,
        lease_token TEXT,
        lease_expires_at INTEGER,
        worker_id TEXT
      );

      -- Leasing reads only due, waiting jobs in queue order; the partial index keeps finished jobs out of that path.
      CREATE INDEX vouch_jobs_due ON vouch_jobs (queue, priority, run_at, id)
        WHERE state IN ('scheduled', 'available', 'retryable');
      CREATE INDEX vouch_jobs_running ON vouch_jobs (lease_expires_at) WHERE state = 'running';
      CREATE INDEX vouch_jobs_key ON vouch_jobs (key) WHERE key IS NOT NULL;
      CREATE INDEX vouch_jobs_finished ON vouch_jobs (state, finished_at) WHERE finished_at IS NOT NULL;

      CREATE TABLE vouch_attempts (
        job_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        worker_id TEXT NOT NULL,
        lease_token TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        outcome TEXT,
        error TEXT,
        PRIMARY KEY (job_id, attempt)
      ) WITHOUT ROWID;
      CREATE INDEX vouch_attempts_ended ON vouch_attempts (outcome, ended_at);

      CREATE TABLE vouch_effects (
        job_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('intent', 'done')),
        result TEXT,
        attempt INTEGER NOT NULL,
        lease_token TEXT NOT NULL,
        resolution TEXT,
        intent_at INTEGER NOT NULL,
        done_at INTEGER,
        PRIMARY KEY (job_id, name)
      ) WITHOUT ROWID;
      CREATE INDEX vouch_effects_intent ON vouch_effects (intent_at) WHERE state = 'intent';
    `,
  },
  {
    version: 2,
    description: 'index only the attempts that the audit lists as recovered',
    sql: `
      -- Every attempt used to enter this index twice (open, then closed); the audit reads only abandoned and lost ones.
      DROP INDEX vouch_attempts_ended;
      CREATE INDEX vouch_attempts_recovered ON vouch_attempts (ended_at) WHERE outcome IN ('abandoned', 'lease_lost');
    `,
  },
  {
    version: 3,
    description: 'write each attempt row once, when the attempt ends',
    sql: `
      -- When the current (or last) attempt of the job started. The attempt row is written from it when
      -- the attempt ends, instead of being inserted at lease time and updated.
      ALTER TABLE vouch_jobs ADD COLUMN attempt_started_at INTEGER;
      UPDATE vouch_jobs
         SET attempt_started_at = (SELECT a.started_at FROM vouch_attempts a WHERE a.job_id = vouch_jobs.id AND a.attempt = vouch_jobs.attempt)
       WHERE state = 'running';
    `,
  },
  {
    version: 4,
    description: 'completed jobs keep the token of the attempt that completed them',
    sql: `
      -- The tables do not change, but what the rows mean does: a completed job keeps lease_token, and with
      -- attempt, worker_id, attempt_started_at and finished_at it is the record of the attempt that completed
      -- it, which has a vouch_attempts row only when verified. An older vouch would show that attempt as
      -- missing, and the new version number makes it refuse this store instead.
    `,
  },
  {
    version: 5,
    description: 'state checks written as comparisons, which SQLite evaluates without building a list per row',
    sql: `
      -- SQLite turns an IN list of three or more values into a temporary b-tree, and in a CHECK constraint or
      -- a partial index's WHERE it builds that b-tree again for every row written. Each lease and commit
      -- paid for it about three times, some 5 microseconds a row. The same conditions as OR chains cost a few
      -- comparisons. SQLite cannot alter a CHECK, so the table is rebuilt; the rows keep their ids.
      CREATE TABLE vouch_jobs_v5 (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        queue TEXT NOT NULL,
        key TEXT,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state = 'scheduled' OR state = 'available' OR state = 'running' OR state = 'retryable'
                                   OR state = 'completed' OR state = 'failed' OR state = 'cancelled'),
        priority INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        lease_ms INTEGER NOT NULL,
        run_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        finished_at INTEGER,
        dedup_window_ms INTEGER NOT NULL,
        result TEXT,
        last_error TEXT,
        lease_token TEXT,
        lease_expires_at INTEGER,
        worker_id TEXT,
        attempt_started_at INTEGER
      );
      INSERT INTO vouch_jobs_v5 (id, name, queue, key, payload, state, priority, attempt, max_attempts, lease_ms, run_at,
                                 created_at, finished_at, dedup_window_ms, result, last_error, lease_token, lease_expires_at,
                                 worker_id, attempt_started_at)
        SELECT id, name, queue, key, payload, state, priority, attempt, max_attempts, lease_ms, run_at,
               created_at, finished_at, dedup_window_ms, result, last_error, lease_token, lease_expires_at,
               worker_id, attempt_started_at
          FROM vouch_jobs;
      DROP TABLE vouch_jobs;
      ALTER TABLE vouch_jobs_v5 RENAME TO vouch_jobs;

      -- A query uses this index only when its WHERE holds this same OR chain (DUE_STATES in sqlite-store.ts).
      CREATE INDEX vouch_jobs_due ON vouch_jobs (queue, priority, run_at, id)
        WHERE state = 'scheduled' OR state = 'available' OR state = 'retryable';
      CREATE INDEX vouch_jobs_running ON vouch_jobs (lease_expires_at) WHERE state = 'running';
      CREATE INDEX vouch_jobs_key ON vouch_jobs (key) WHERE key IS NOT NULL;
      CREATE INDEX vouch_jobs_finished ON vouch_jobs (state, finished_at) WHERE finished_at IS NOT NULL;
    `,
  },
];

/**
 * Applies the migrations this database lacks. The immediate transaction
 * takes SQLite's write lock first, so processes starting together apply each
 * migration once.
 */
export function migrate(db: Database, now: number): void {
  db.exec(
    'CREATE TABLE IF NOT EXISTS vouch_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)',
  );
  const apply = db.transaction(() => {
    const row = db.prepare('SELECT max(version) AS version FROM vouch_migrations').get() as { version: number | null };
    const current = row.version ?? 0;
    const newest = MIGRATIONS.at(-1)?.version ?? 0;
    if (current > newest) {
      throw new Error(
        `database schema is at version ${current}, newer than this vouch knows (${newest}); upgrade vouch before running it against this database`,
      );
    }
    for (const migration of MIGRATIONS) {
      if (migration.version <= current) continue;
      db.exec(migration.sql);
      db.prepare('INSERT INTO vouch_migrations (version, description, applied_at) VALUES (?, ?, ?)').run(
        migration.version,
        migration.description,
        now,
      );
    }
  });
  apply.immediate();
}

/**
 * Throws unless the database has exactly the schema this vouch expects, naming
 * the command or upgrade that fixes it. A store opened without migrating must
 * not be read by a vouch that would misread its rows.
 */
export function assertMigrated(db: Database): void {
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'vouch_migrations'").get();
  if (!table) throw new Error('it has no vouch schema; run `vouch migrate --store PATH` first');
  const current = (db.prepare('SELECT max(version) FROM vouch_migrations').pluck().get() as number | null) ?? 0;
  const newest = MIGRATIONS.at(-1)?.version ?? 0;
  if (current > newest) {
    throw new Error(`its schema is at version ${current}, newer than the version ${newest} this vouch expects; upgrade vouch to read it`);
  }
  if (current < newest) {
    throw new Error(`its schema is at version ${current} and this vouch needs version ${newest}; run \`vouch migrate --store PATH\` first`);
  }
}
