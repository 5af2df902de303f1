import { randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, type FSWatcher, openSync, realpathSync, statSync, watch, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3';
import { type Clock, systemClock } from '../../core/clock.js';
import { ConfigurationError, VouchError } from '../../core/errors.js';
import { failpoint } from '../../core/failpoints.js';
import { rejectUnknownOptions, shown } from '../../core/option-errors.js';
import { emptyStateCounts, type JobState, PENDING_STATES, TERMINAL_STATES } from '../../core/states.js';
import type {
  AttemptRecord,
  AuditFindings,
  AuditQuery,
  Completion,
  EffectDone,
  EffectIntent,
  EffectIntentOutcome,
  EffectRecord,
  EnqueueOutcome,
  Failure,
  JobRecord,
  Lease,
  LeasedJob,
  LeaseRequest,
  NewJob,
  RecoveredJob,
  Store,
} from '../../core/store.js';
import {
  parseStoredJson,
  type AttemptRow as StoredAttemptRow,
  type EffectRow as StoredEffectRow,
  type JobRow as StoredJobRow,
  toAttemptRecord,
  toEffectRecord,
  toJobRecord,
} from '../rows.js';
import { GroupCommit } from './group-commit.js';
import { assertMigrated, migrate } from './migrations.js';
import { WalSync } from './wal-sync.js';

// SQLite returns integer ids as numbers.
type JobRow = StoredJobRow<number>;
type AttemptRow = StoredAttemptRow<number>;
type EffectRow = StoredEffectRow<number>;

export interface SqliteStoreOptions {
  /** Path of the database file; created if missing. */
  path: string;
  /** How long a write waits for another process's lock before failing, in milliseconds. @defaultValue 5000 */
  busyTimeoutMs?: number;
  /**
   * SQLite's `synchronous` setting. `full` syncs every commit to disk, so a
   * completed job survives a power loss. `normal` survives a process crash,
   * but a power loss may undo the newest commits. @defaultValue 'full'
   */
  synchronous?: 'full' | 'normal';
  /** How often an idle worker checks for commits by other processes, in milliseconds. @defaultValue 25 */
  wakePollMs?: number;
  /** Apply migrations when the store opens. @defaultValue true */
  migrate?: boolean;
  clock?: Clock;
}

/** The connection that ctx.transaction callbacks receive on SQLite. Callbacks must be synchronous. */
export type SqliteTransaction = Database;

/**
 * The columns a lease reads before it updates the rows, in the order
 * leasedJobRecord reads them. The queue is the lease's own, and attempt,
 * lease token and expiry are computed as the update sets them.
 */
const LEASED_COLUMNS =
  'id, name, key, payload, priority, attempt, max_attempts, lease_ms, run_at, created_at, finished_at, result, last_error';
type LeasedRow = [
  id: number,
  name: string,
  key: string | null,
  payload: string,
  priority: number,
  attempt: number,
  maxAttempts: number,
  leaseMs: number,
  runAt: number,
  createdAt: number,
  finishedAt: number | null,
  result: string | null,
  lastError: string | null,
];

/**
 * Builds the record of a job read by a lease, as the lease's update leaves it:
 * running for `workerId`, one attempt further, with the lease's token for it
 * (`tokenPrefix` and the job id) and its lease expiring `lease_ms` after `now`.
 */
function leasedJobRecord(row: LeasedRow, queue: string, workerId: string, tokenPrefix: string, now: number): JobRecord {
  // Indexed reads: destructuring an array goes through its iterator, which allocated about 90 bytes per job.
  return {
    id: String(row[0]),
    name: row[1],
    queue,
    key: row[2],
    payload: parseStoredJson(row[3]),
    state: 'running',
    priority: row[4],
    attempt: row[5] + 1,
    maxAttempts: row[6],
    leaseMs: row[7],
    runAt: row[8],
    createdAt: row[9],
    finishedAt: row[10],
    result: parseStoredJson(row[11]),
    lastError: row[12],
    leaseToken: tokenPrefix + row[0],
    leaseExpiresAt: now + row[7],
    workerId,
  };
}

const WAKE_BYTE = Buffer.from('1');

const PENDING_LIST = PENDING_STATES.map((state) => `'${state}'`).join(', ');
const TERMINAL_LIST = TERMINAL_STATES.map((state) => `'${state}'`).join(', ');

/**
 * The states a job waits in, as the partial index vouch_jobs_due spells them:
 * SQLite uses that index only for a WHERE that contains this same expression.
 */
const DUE_STATES = `(state = 'scheduled' OR state = 'available' OR state = 'retryable')`;

/**
 * The number of jobs in each state, read from the indexes rather than the
 * table: the finished jobs from vouch_jobs_finished (a terminal state is the
 * only one with a finished_at), the pending ones through vouch_jobs_due and
 * the running ones from vouch_jobs_running. A GROUP BY over the table reads
 * and sorts every row, and the event loop waits while it runs. It took 2.3 ms
 * at 20,000 jobs and 196 ms at 1,000,000, against 0.9 and 73 ms this way
 * (Node 20, 2 cores). A caller that polls it pays that on every call.
 */
const COUNT_BY_STATE_SQL = `
  SELECT state, count(*) FROM vouch_jobs WHERE finished_at IS NOT NULL AND state IN (${TERMINAL_LIST}) GROUP BY state
  UNION ALL
  SELECT state, count(*) FROM vouch_jobs WHERE ${DUE_STATES} GROUP BY state
  UNION ALL
  SELECT 'running', count(*) FROM vouch_jobs WHERE state = 'running'`;

/** The rows a lease takes (LEASED_COLUMNS), in queue order. Parameters: queue, now, limit. */
export const DUE_JOBS_SQL = `SELECT ${LEASED_COLUMNS} FROM vouch_jobs
  WHERE queue = ? AND ${DUE_STATES} AND run_at <= ?
  ORDER BY priority, run_at, id
  LIMIT ?`;

/**
 * The embedded store: one SQLite file in WAL mode, shared safely by several
 * worker processes. SQLite has one writer at a time, so every write that
 * must be atomic runs in an immediate transaction, which takes the write lock
 * up front. No SKIP LOCKED is needed, because no two leases run at once.
 */
export class SqliteStore implements Store<SqliteTransaction> {
  readonly db: Database;
  private readonly path: string;
  private readonly clock: Clock;
  private readonly wakePollMs: number;
  private readonly listeners = new Set<(queue: string | null) => void>();
  private wakeTimer: NodeJS.Timeout | undefined;
  private walWatcher: FSWatcher | undefined;
  private lastDataVersion = 0;
  private walRecheckPending = false;
  private wakeWatcher: FSWatcher | undefined;
  /** The wake file, open for writing once this store has enqueued; null after it could not be opened. */
  private wakeFileFd: number | null | undefined;
  private readonly statements = new Map<string, Statement>();
  private readonly groupCommit: GroupCommit;
  /** Flushes the WAL off the event loop; null when commits need no flush (`synchronous: 'normal'`) or there is no WAL file. */
  private readonly walSync: WalSync | null;
  private closed = false;

  constructor(options: SqliteStoreOptions) {
    rejectUnknownOptions('SqliteStore', options, ['path', 'busyTimeoutMs', 'synchronous', 'wakePollMs', 'migrate', 'clock']);
    if (!options || typeof options.path !== 'string' || options.path.length === 0) {
      throw new ConfigurationError('SqliteStore needs a path to a database file, for example new SqliteStore({ path: "vouch.db" }).');
    }
    if (options.synchronous !== undefined && options.synchronous !== 'full' && options.synchronous !== 'normal') {
      throw new ConfigurationError(
        `SqliteStore option synchronous must be "full" or "normal"; got ${JSON.stringify(options.synchronous)}.`,
      );
    }
    const busyTimeoutMs = options.busyTimeoutMs;
    // better-sqlite3 takes at most a signed 32-bit number of milliseconds.
    if (busyTimeoutMs !== undefined && !(Number.isInteger(busyTimeoutMs) && busyTimeoutMs >= 0 && busyTimeoutMs <= 2 ** 31 - 1)) {
      throw new ConfigurationError(
        `SqliteStore option busyTimeoutMs must be a whole number of milliseconds from 0 to 2147483647; got ${shown(busyTimeoutMs)}.`,
      );
    }
    this.clock = options.clock ?? systemClock;
    const wakePollMs = options.wakePollMs ?? 25;
    // 0 turns the poll off: the store then learns only of its own commits.
    if (!(Number.isInteger(wakePollMs) && wakePollMs >= 0 && wakePollMs <= 2 ** 31 - 1)) {
      throw new ConfigurationError(
        `SqliteStore option wakePollMs must be a whole number of milliseconds from 0 to 2147483647; got ${shown(wakePollMs)}.`,
      );
    }
    this.wakePollMs = wakePollMs;
    const migrateOnOpen = options.migrate !== false;
    try {
      // Without migrations the file must already be a vouch store, so a mistyped path is not created empty.
      this.db = new BetterSqlite3(options.path, { timeout: options.busyTimeoutMs ?? 5000, fileMustExist: !migrateOnOpen });
      // SQLite follows a symbolic link and keeps its WAL beside the file it points to, so the files vouch
      // keeps beside the database (the WAL it flushes and watches, the wake file) are named from the real path.
      this.path = this.db.memory ? options.path : realpathSync(options.path);
      const journalMode = this.db.pragma('journal_mode = WAL', { simple: true });
      this.db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
      this.db.pragma('foreign_keys = ON');
      // Workers write, so a file that cannot take a write fails here rather than at the first commit.
      this.db.exec('BEGIN IMMEDIATE');
      this.db.exec('ROLLBACK');
      if (migrateOnOpen) migrate(this.db, this.clock());
      else assertMigrated(this.db);
      const syncEachCommit = options.synchronous !== 'normal';
      // An in-memory database has no WAL file to flush; SQLite syncs nothing for it anyway.
      this.walSync = syncEachCommit && journalMode === 'wal' ? new WalSync(`${this.path}-wal`) : null;
      this.groupCommit = new GroupCommit(this.db, syncEachCommit, this.walSync);
    } catch (error) {
      const message = (error as Error).message;
      let fix = '';
      if (existsSync(options.path) && statSync(options.path).isDirectory()) {
        fix = ` It is a folder: name a database file in it, for example ${JSON.stringify(`${options.path.replace(/\/+$/, '')}/vouch.db`)}.`;
      } else if (!existsSync(options.path) && !existsSync(dirname(resolve(options.path)))) {
        fix = ' Check that its folder exists.';
      } else if (!existsSync(options.path) && !migrateOnOpen) {
        fix = ' Check the path, or run `vouch migrate --store PATH` to create a new store.';
      } else if (/readonly|read-only|unable to open|not permitted|permission/i.test(message)) {
        fix = ' Make the file, and the folder that holds it, writable by this process: in WAL mode SQLite also writes files beside it.';
      }
      throw new VouchError(`could not open SQLite database ${JSON.stringify(options.path)}: ${message.replace(/\.+$/, '')}.${fix}`, {
        cause: error,
      });
    }
  }

  async migrate(): Promise<void> {
    migrate(this.db, this.clock());
  }

  async enqueue(jobs: readonly NewJob[]): Promise<EnqueueOutcome[]> {
    const now = this.clock();
    const insert = this.db.transaction((batch: readonly NewJob[]) => batch.map((job) => this.insertOne(job, now)));
    const outcomes = this.writeThenSync(() => insert.immediate(jobs));
    const queues = new Set(outcomes.filter((outcome) => !outcome.duplicate).map((outcome) => outcome.job.queue));
    // Workers may lease the jobs before they are on disk: anything durable they write lands after them in the WAL.
    for (const queue of queues) this.wake(queue);
    // No other process can open an in-memory database, so it needs no wake file.
    if (queues.size > 0 && !this.db.memory) this.touchWakeFile();
    await this.walSync?.durable();
    return outcomes;
  }

  private insertOne(job: NewJob, now: number): EnqueueOutcome {
    if (job.key !== null) {
      const existing = this.statement(
        `SELECT * FROM vouch_jobs
          WHERE key = ? AND (state IN (${PENDING_LIST}) OR (state = 'completed' AND finished_at + dedup_window_ms > ?))
          ORDER BY id DESC LIMIT 1`,
      ).get(job.key, now) as JobRow | undefined;
      if (existing) return { job: toJobRecord(existing), duplicate: true };
    }
    const runAt = job.runAt ?? now;
    const state: JobState = runAt > now ? 'scheduled' : 'available';
    const row = this.statement(
      `INSERT INTO vouch_jobs (name, queue, key, payload, state, priority, max_attempts, lease_ms, run_at, created_at, dedup_window_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
    ).get(
      job.name,
      job.queue,
      job.key,
      job.payloadJson,
      state,
      job.priority,
      job.maxAttempts,
      job.leaseMs,
      runAt,
      now,
      job.dedupWindowMs,
    ) as JobRow;
    return { job: toJobRecord(row), duplicate: false };
  }

  /**
   * Runs in the group transaction, so a batch of leases shares its fsync with
   * the commits of the attempts before it, and needs none when it is alone.
   * This and the other methods that only queue a group write return its
   * promise instead of being async, which would wrap it in one more promise per job.
   */
  lease(request: LeaseRequest): Promise<LeasedJob[]> {
    return this.groupCommit.run(() => this.claim(request), { unsynced: true });
  }

  private claim(request: LeaseRequest): LeasedJob[] {
    const now = this.clock();
    // Two statements where one UPDATE ... RETURNING would do: SQLite's RETURNING costs about twice the
    // update itself (210 against 95 microseconds for ten jobs), and both run in one write transaction,
    // so the rows read are the rows updated. The read goes through vouch_jobs_due in queue order.
    const rows = this.statement(DUE_JOBS_SQL, true).all(
      request.queue,
      now,
      Math.max(request.limit, request.roomAtWrite?.() ?? 0),
    ) as LeasedRow[];
    if (rows.length === 0) return [];
    // Each attempt's token is this lease's random prefix and the job's id: unique per attempt, with no
    // random number drawn per row.
    const tokenPrefix = `${randomBytes(6).toString('hex')}-`;
    const changed = this.statement(
      `UPDATE vouch_jobs
          SET state = 'running', attempt = attempt + 1, lease_token = ? || id,
              lease_expires_at = ? + lease_ms, worker_id = ?, attempt_started_at = ?
        WHERE id IN (SELECT value FROM json_each(?))`,
    ).run(tokenPrefix, now, request.workerId, now, JSON.stringify(rows.map((row) => row[0]))).changes;
    if (changed !== rows.length) {
      // Unreachable: the read and the update run in one immediate transaction. Throwing rolls both back.
      throw new VouchError(`a lease read ${rows.length} due jobs and updated ${changed}`);
    }

    // The attempt rows are written when the attempts end (recordAttempt).
    return rows.map((row): LeasedJob => {
      const job = leasedJobRecord(row, request.queue, request.workerId, tokenPrefix, now);
      const id = row[0];
      const token = job.leaseToken as string;
      const lease: Lease = { jobId: job.id, attempt: job.attempt, token };
      if (job.attempt === 1) return { job, lease, previousAttempt: null, effects: [] };
      const previous = this.statement('SELECT * FROM vouch_attempts WHERE job_id = ? AND attempt = ?').get(id, job.attempt - 1) as
        | AttemptRow
        | undefined;
      const effects = this.statement('SELECT * FROM vouch_effects WHERE job_id = ?').all(id) as EffectRow[];
      return {
        job,
        lease,
        previousAttempt: previous ? toAttemptRecord(previous) : null,
        effects: effects.map(toEffectRecord),
      };
    });
  }

  async nextDueInMs(queue: string): Promise<number | null> {
    const row = this.statement(`SELECT min(run_at) AS run_at FROM vouch_jobs WHERE state IN ('scheduled', 'retryable') AND queue = ?`).get(
      queue,
    ) as { run_at: number | null };
    return row.run_at === null ? null : row.run_at - this.clock();
  }

  async heartbeat(leases: readonly Lease[]): Promise<Set<string>> {
    if (leases.length === 0) return new Set();
    const now = this.clock();
    const pairs = JSON.stringify(leases.map((lease) => [Number(lease.jobId), lease.token]));
    const rows = this.statement(
      `UPDATE vouch_jobs SET lease_expires_at = ? + lease_ms
        WHERE state = 'running' AND lease_expires_at > ?
          AND (id, lease_token) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))
        RETURNING id`,
    ).all(now, now, pairs) as { id: number }[];
    return new Set(rows.map((row) => String(row.id)));
  }

  recordEffectIntent(lease: Lease, effect: EffectIntent): Promise<EffectIntentOutcome> {
    return this.groupCommit.run((): EffectIntentOutcome => {
      // The clock is read when the write runs, so the fence never judges a lease by an older time.
      const now = this.clock();
      if (!this.holdsLease(lease, now)) return { status: 'lease_lost' };
      const existing = this.statement('SELECT state, result FROM vouch_effects WHERE job_id = ? AND name = ?').get(
        Number(lease.jobId),
        effect.name,
      ) as { state: 'intent' | 'done'; result: string | null } | undefined;
      if (existing?.state === 'done') return { status: 'done', result: parseStoredJson(existing.result) };
      this.statement(
        `INSERT INTO vouch_effects (job_id, name, idempotency_key, state, attempt, lease_token, intent_at)
         VALUES (?, ?, ?, 'intent', ?, ?, ?)
         ON CONFLICT (job_id, name) DO UPDATE SET attempt = excluded.attempt, lease_token = excluded.lease_token, intent_at = excluded.intent_at`,
      ).run(Number(lease.jobId), effect.name, effect.idempotencyKey, lease.attempt, lease.token, now);
      return { status: 'recorded' };
    });
  }

  /**
   * Resolves when its group has committed, without waiting for the disk: the
   * WAL is appended to in order, so the commit or the next intent of the
   * same job, which do wait, carry this record to the disk with them.
   */
  recordEffectDone(lease: Lease, effect: EffectDone): Promise<void> {
    return this.groupCommit.run(
      () => {
        this.statement(
          `UPDATE vouch_effects SET state = 'done', result = ?, resolution = ?, done_at = ?
            WHERE job_id = ? AND name = ? AND state = 'intent'`,
        ).run(effect.resultJson, effect.resolution, this.clock(), Number(lease.jobId), effect.name);
      },
      { unsynced: true },
    );
  }

  commit(lease: Lease, completion: Completion<SqliteTransaction>): Promise<boolean> {
    const hasWrites = completion.writes.length > 0;
    const write = (): boolean => {
      const now = this.clock();
      if (hasWrites) {
        // The application's writes run only under a held lease.
        if (!this.holdsLease(lease, now)) return false;
        for (const apply of completion.writes) {
          const returned = apply(this.db);
          if (returned && typeof (returned as Promise<unknown>).then === 'function') {
            throw new VouchError(
              'a ctx.transaction callback returned a promise; on SQLite it must be synchronous, because the commit transaction cannot stay open across an await',
            );
          }
        }
      }
      // Failpoint: inside the open commit transaction; a kill here must roll back the writes above.
      void failpoint('inside-commit');
      // The job row keeps the lease token: with attempt, worker_id and attempt_started_at it is the
      // record of the attempt that completed the job (see listAttempts).
      const changed = this.statement(
        `UPDATE vouch_jobs SET state = 'completed', result = ?, finished_at = ?, lease_expires_at = NULL
          WHERE id = ? AND state = 'running' AND lease_token = ? AND lease_expires_at > ?`,
      ).run(completion.resultJson, now, Number(lease.jobId), lease.token, now).changes;
      if (changed === 0) {
        // Unreachable after holdsLease in the same transaction. Throwing rolls the application's writes back with it.
        if (hasWrites) throw new VouchError(`commit of job ${lease.jobId} lost its lease inside its own transaction`);
        return false;
      }
      // A succeeded attempt's row would repeat the job row, and writing it took about 14% of a no-op
      // drain's CPU time. The job row cannot tell verified from succeeded, so a verified attempt gets its row.
      if (completion.outcome === 'verified') this.recordAttempt(lease, completion.outcome, null, now);
      return true;
    };
    // Application writes may throw, so a savepoint keeps them from failing the other commits in the group.
    return this.groupCommit.run(write, { isolated: hasWrites });
  }

  fail(lease: Lease, failure: Failure): Promise<boolean> {
    return this.groupCommit.run((): boolean => {
      const now = this.clock();
      const retryAt = failure.retryAt;
      const state: JobState = retryAt === null ? 'failed' : retryAt > now ? 'retryable' : 'available';
      const changed = this.statement(
        `UPDATE vouch_jobs SET state = ?, run_at = ?, last_error = ?, finished_at = ?, lease_token = NULL, lease_expires_at = NULL
          WHERE id = ? AND state = 'running' AND lease_token = ? AND lease_expires_at > ?`,
      ).run(state, retryAt ?? now, failure.error, retryAt === null ? now : null, Number(lease.jobId), lease.token, now).changes;
      if (changed === 0) return false;
      this.recordAttempt(lease, 'errored', failure.error, now);
      return true;
    });
  }

  release(lease: Lease, reason: string): Promise<boolean> {
    return this.groupCommit.run((): boolean => {
      const now = this.clock();
      // Releasing is safe even after expiry, so only the token is checked.
      const changed = this.statement(
        `UPDATE vouch_jobs SET state = 'available', run_at = ?, max_attempts = max_attempts + 1, lease_token = NULL, lease_expires_at = NULL
          WHERE id = ? AND state = 'running' AND lease_token = ?`,
      ).run(now, Number(lease.jobId), lease.token).changes;
      if (changed === 0) return false;
      this.recordAttempt(lease, 'released', reason, now);
      return true;
    });
  }

  abandonLease(lease: Lease, reason: string): Promise<void> {
    return this.groupCommit.run(() => {
      const now = this.clock();
      // Recorded as lease_lost whatever ended the attempt before (the sweep writes abandoned), but never
      // over a recorded success. With no row yet, recordAttempt writes it from the job row, if that still
      // runs this attempt: a job this attempt completed has no row, and keeps none.
      const { changes } = this.statement(
        `UPDATE vouch_attempts SET outcome = 'lease_lost', error = ?, ended_at = coalesce(ended_at, ?)
          WHERE job_id = ? AND attempt = ? AND lease_token = ? AND outcome IS NOT 'succeeded' AND outcome IS NOT 'verified'`,
      ).run(reason, now, Number(lease.jobId), lease.attempt, lease.token);
      if (changes === 0) this.recordAttempt(lease, 'lease_lost', reason, now, { whileRunning: true });
      this.recoverJob(Number(lease.jobId), lease.token, `lease lost on attempt ${lease.attempt}: ${reason}`, now);
    });
  }

  async sweep(): Promise<RecoveredJob[]> {
    const now = this.clock();
    const write = this.db.transaction((): RecoveredJob[] => {
      const expired = this.statement(
        `SELECT id, name, queue, attempt, max_attempts, lease_token, worker_id FROM vouch_jobs
          WHERE state = 'running' AND lease_expires_at <= ? LIMIT 1000`,
      ).all(now) as Pick<JobRow, 'id' | 'name' | 'queue' | 'attempt' | 'max_attempts' | 'lease_token' | 'worker_id'>[];
      return expired.map((row) => {
        const reason = `abandoned: the lease of attempt ${row.attempt} expired without a heartbeat (worker ${row.worker_id} died or stalled)`;
        this.recordAttempt({ jobId: String(row.id), attempt: row.attempt, token: row.lease_token as string }, 'abandoned', reason, now);
        const state = this.recoverJob(row.id, row.lease_token as string, reason, now);
        return {
          jobId: String(row.id),
          name: row.name,
          queue: row.queue,
          attempt: row.attempt,
          leaseToken: row.lease_token as string,
          workerId: row.worker_id as string,
          state: state ?? 'available',
        };
      });
    });
    return write.immediate();
  }

  /**
   * Makes a running job available again, or failed when that was its last
   * attempt. Its run_at is kept, so it goes ahead of jobs that became due after it.
   */
  private recoverJob(jobId: number, token: string, reason: string, now: number): 'available' | 'failed' | null {
    const row = this.statement(
      `UPDATE vouch_jobs
          SET state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'available' END,
              last_error = CASE WHEN attempt >= max_attempts THEN ? || ' (no attempts left)' ELSE ? END,
              finished_at = CASE WHEN attempt >= max_attempts THEN ? ELSE NULL END,
              lease_token = NULL, lease_expires_at = NULL
        WHERE id = ? AND state = 'running' AND lease_token = ?
        RETURNING state`,
    ).get(reason, reason, now, jobId, token) as { state: 'available' | 'failed' } | undefined;
    return row?.state ?? null;
  }

  async cancel(jobId: string): Promise<boolean> {
    const changes = this.statement(
      `UPDATE vouch_jobs SET state = 'cancelled', finished_at = ?
        WHERE id = ? AND ${DUE_STATES}`,
    ).run(this.clock(), Number(jobId)).changes;
    return changes > 0;
  }

  async getJob(jobId: string): Promise<JobRecord | null> {
    const row = this.statement('SELECT * FROM vouch_jobs WHERE id = ?').get(Number(jobId)) as JobRow | undefined;
    return row ? toJobRecord(row) : null;
  }

  async listAttempts(jobId: string): Promise<AttemptRecord[]> {
    // Two attempts have no row, and the job row describes them: the one that runs now (its row is written
    // when it ends, by recordAttempt) and the one that completed the job without a verify (see commit).
    // A job completed by an older vouch kept no token, and has a row for every attempt.
    const rows = this.statement(
      `SELECT job_id, attempt, worker_id, lease_token, started_at, ended_at, outcome, error FROM vouch_attempts WHERE job_id = ?
       UNION ALL
       SELECT id, attempt, worker_id, lease_token, coalesce(attempt_started_at, finished_at),
              CASE state WHEN 'completed' THEN finished_at END, CASE state WHEN 'completed' THEN 'succeeded' END, NULL
         FROM vouch_jobs j
        WHERE id = ? AND lease_token IS NOT NULL
          AND (state = 'completed' OR (state = 'running' AND attempt_started_at IS NOT NULL))
          AND NOT EXISTS (SELECT 1 FROM vouch_attempts o WHERE o.job_id = j.id AND o.attempt = j.attempt)
       ORDER BY attempt`,
    ).all(Number(jobId), Number(jobId)) as AttemptRow[];
    return rows.map(toAttemptRecord);
  }

  async listEffects(jobId: string): Promise<EffectRecord[]> {
    const rows = this.statement('SELECT * FROM vouch_effects WHERE job_id = ? ORDER BY intent_at, name').all(Number(jobId)) as EffectRow[];
    return rows.map(toEffectRecord);
  }

  async countByState(): Promise<Record<JobState, number>> {
    const counts = emptyStateCounts();
    const rows = this.statement(COUNT_BY_STATE_SQL, true).all() as [JobState, number][];
    for (const [state, count] of rows) counts[state] += count;
    return counts;
  }

  async audit(query: AuditQuery): Promise<AuditFindings> {
    const now = this.clock();
    const overdue = this.statement(
      `SELECT id, name, queue, state, run_at AS due FROM vouch_jobs
        WHERE ${DUE_STATES} AND run_at < ?
       UNION ALL
       SELECT id, name, queue, state, lease_expires_at AS due FROM vouch_jobs
        WHERE state = 'running' AND lease_expires_at < ?
       ORDER BY due LIMIT ?`,
    ).all(now - query.overdueAfterMs, now - query.overdueAfterMs, query.limit) as {
      id: number;
      name: string;
      queue: string;
      state: JobState;
      due: number;
    }[];
    const inDoubt = this.statement(
      `SELECT e.job_id, j.name, e.name AS effect, e.idempotency_key, j.state, e.intent_at FROM vouch_effects e
         JOIN vouch_jobs j ON j.id = e.job_id
        WHERE e.state = 'intent' AND e.intent_at < ? AND j.state <> 'running'
        ORDER BY e.intent_at LIMIT ?`,
    ).all(now - query.inDoubtAfterMs, query.limit) as {
      job_id: number;
      name: string;
      effect: string;
      idempotency_key: string;
      state: JobState;
      intent_at: number;
    }[];
    const recovered = this.statement(
      `SELECT a.job_id, j.name, a.attempt, a.worker_id, a.outcome, a.ended_at FROM vouch_attempts a
         JOIN vouch_jobs j ON j.id = a.job_id
        WHERE a.outcome IN ('abandoned', 'lease_lost') AND a.ended_at > ?
        ORDER BY a.ended_at DESC LIMIT ?`,
    ).all(now - query.windowMs, query.limit) as {
      job_id: number;
      name: string;
      attempt: number;
      worker_id: string;
      outcome: 'abandoned' | 'lease_lost';
      ended_at: number;
    }[];
    const dead = this.statement(
      `SELECT id, name, attempt, last_error, finished_at FROM vouch_jobs
        WHERE state = 'failed' AND finished_at > ? ORDER BY finished_at DESC LIMIT ?`,
    ).all(now - query.windowMs, query.limit) as {
      id: number;
      name: string;
      attempt: number;
      last_error: string | null;
      finished_at: number;
    }[];

    return {
      overdue: overdue.map((row) => ({
        jobId: String(row.id),
        name: row.name,
        queue: row.queue,
        state: row.state,
        dueSinceMs: now - row.due,
      })),
      inDoubt: inDoubt.map((row) => ({
        jobId: String(row.job_id),
        name: row.name,
        effect: row.effect,
        idempotencyKey: row.idempotency_key,
        jobState: row.state,
        sinceMs: now - row.intent_at,
      })),
      recovered: recovered.map((row) => ({
        jobId: String(row.job_id),
        name: row.name,
        attempt: row.attempt,
        workerId: row.worker_id,
        outcome: row.outcome,
        endedAt: row.ended_at,
      })),
      dead: dead.map((row) => ({
        jobId: String(row.id),
        name: row.name,
        attempt: row.attempt,
        lastError: row.last_error,
        finishedAt: row.finished_at,
      })),
    };
  }

  onWake(listener: (queue: string | null) => void): () => void {
    this.listeners.add(listener);
    if (!this.wakeTimer && this.wakePollMs > 0) {
      this.lastDataVersion = this.dataVersion();
      // data_version changes when another connection commits, which is how workers in other processes learn of new jobs without a full poll.
      this.wakeTimer = setInterval(() => this.checkForCommits(), this.wakePollMs);
      this.wakeTimer.unref();
      if (!this.db.memory) {
        this.watchWal();
        this.watchWakeFile();
      }
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.wakeTimer) {
        clearInterval(this.wakeTimer);
        this.wakeTimer = undefined;
        this.walWatcher?.close();
        this.walWatcher = undefined;
        this.wakeWatcher?.close();
        this.wakeWatcher = undefined;
      }
    };
  }

  /** Wakes listeners if another connection committed since the last check, and returns whether one did. */
  private checkForCommits(): boolean {
    if (this.closed) return false;
    const version = this.dataVersion();
    if (version === this.lastDataVersion) return false;
    this.lastDataVersion = version;
    this.wake(null);
    return true;
  }

  /**
   * Checks for commits as soon as another process writes the WAL file, instead
   * of waiting for the next poll. The poll stays as the fallback: a file system
   * without change events, or a WAL file that SQLite removes and recreates.
   */
  private watchWal(): void {
    try {
      const watcher = watch(`${this.path}-wal`, { persistent: false }, () => this.checkAfterWalWrite(0));
      watcher.on('error', () => {
        watcher.close();
        if (this.walWatcher === watcher) this.walWatcher = undefined;
      });
      this.walWatcher = watcher;
    } catch {
      // No WAL file to watch (yet): the poll covers it.
    }
  }

  /**
   * Checks for a commit after a WAL change event, and again every
   * millisecond up to ten times. A writer appends its frames to the WAL
   * (and syncs them, when it commits with synchronous = FULL) before it makes
   * the commit visible, so the change event arrives before the commit can be
   * seen. The later checks find it without waiting for the poll, at a few
   * microseconds each.
   */
  private checkAfterWalWrite(retry: number): void {
    if (this.checkForCommits() || retry >= 10 || this.closed) return;
    if (retry === 0 && this.walRecheckPending) return;
    this.walRecheckPending = true;
    setTimeout(() => {
      this.walRecheckPending = false;
      this.checkAfterWalWrite(retry + 1);
    }, 1).unref();
  }

  /**
   * Rewrites the wake file (the database path plus `-wake`), one byte that a
   * store rewrites after each enqueue commits. Its change event, unlike the WAL's,
   * comes after the commit is visible, so an idle worker in another process
   * leases the job at once. Any failure here only leaves the WAL watch and
   * the poll to wake workers.
   */
  private touchWakeFile(): void {
    if (this.wakeFileFd === undefined) {
      try {
        this.wakeFileFd = openSync(`${this.path}-wake`, constants.O_WRONLY | constants.O_CREAT);
      } catch {
        this.wakeFileFd = null;
      }
    }
    if (this.wakeFileFd === null) return;
    try {
      writeSync(this.wakeFileFd, WAKE_BYTE, 0, 1, 0);
    } catch {
      this.closeWakeFile();
      this.wakeFileFd = null;
    }
  }

  private watchWakeFile(): void {
    try {
      closeSync(openSync(`${this.path}-wake`, constants.O_WRONLY | constants.O_CREAT));
      const watcher = watch(`${this.path}-wake`, { persistent: false }, () => this.checkAfterWalWrite(0));
      watcher.on('error', () => {
        watcher.close();
        if (this.wakeWatcher === watcher) this.wakeWatcher = undefined;
      });
      this.wakeWatcher = watcher;
    } catch {
      // A folder that does not allow the file: the WAL watch and the poll cover it.
    }
  }

  private closeWakeFile(): void {
    if (typeof this.wakeFileFd !== 'number') return;
    try {
      closeSync(this.wakeFileFd);
    } catch {
      // Already closed; nothing to release.
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.wakeTimer) clearInterval(this.wakeTimer);
    this.walWatcher?.close();
    this.wakeWatcher?.close();
    this.closeWakeFile();
    this.listeners.clear();
    await this.walSync?.close();
    this.db.close();
  }

  private wake(queue: string | null): void {
    for (const listener of this.listeners) listener(queue);
  }

  /**
   * Runs a write of its own transaction. With a WalSync, the COMMIT skips its
   * sync and the caller awaits `walSync.durable()` before reporting the write
   * done, so the event loop does not wait for the disk.
   */
  private writeThenSync<T>(write: () => T): T {
    const diskFailure = this.walSync?.failed;
    if (diskFailure) throw diskFailure;
    if (!this.walSync) return write();
    this.db.exec('PRAGMA synchronous = NORMAL');
    try {
      return write();
    } finally {
      this.db.exec('PRAGMA synchronous = FULL');
    }
  }

  private dataVersion(): number {
    return this.statement('PRAGMA data_version').pluck().get() as number;
  }

  /** The fence: true only while the job runs under this token and the lease has not expired. */
  private holdsLease(lease: Lease, now: number): boolean {
    const row = this.statement(
      `SELECT 1 FROM vouch_jobs WHERE id = ? AND state = 'running' AND lease_token = ? AND lease_expires_at > ?`,
    ).get(Number(lease.jobId), lease.token, now);
    return row !== undefined;
  }

  /**
   * Writes the row of an attempt that ended, from the job row, which holds the
   * attempt's worker and start time while the job row still names it. A row
   * that a vouch before schema version 3 opened at lease time is closed in
   * place if it is still open under the same token. Such an attempt has no
   * attempt_started_at, so started_at falls back to the end time.
   * `whileRunning` writes the row only if the job still runs this attempt.
   */
  private recordAttempt(lease: Lease, outcome: string, error: string | null, now: number, options: { whileRunning?: boolean } = {}): void {
    this.statement(
      `INSERT INTO vouch_attempts (job_id, attempt, worker_id, lease_token, started_at, ended_at, outcome, error)
       SELECT id, attempt, worker_id, ?, coalesce(attempt_started_at, ?), ?, ?, ? FROM vouch_jobs
        WHERE id = ? AND attempt = ?${options.whileRunning ? ` AND state = 'running'` : ''}
       ON CONFLICT (job_id, attempt) DO UPDATE SET outcome = excluded.outcome, error = excluded.error, ended_at = excluded.ended_at
        WHERE vouch_attempts.lease_token = excluded.lease_token AND vouch_attempts.ended_at IS NULL`,
    ).run(lease.token, now, now, outcome, error, Number(lease.jobId), lease.attempt);
  }

  /** Returns the prepared statement for `sql`, made once. A `raw` statement returns rows as arrays of column values. */
  private statement(sql: string, raw = false): Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      if (raw) statement.raw(true);
      this.statements.set(sql, statement);
    }
    return statement;
  }
}
