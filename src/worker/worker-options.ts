import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { JobDefinition } from '../core/job-definition.js';
import type { Store } from '../core/store.js';

export interface WorkerOptions {
  store: Store<any>;
  /** The job definitions this worker runs. */
  jobs: readonly JobDefinition<any, any>[];
  /**
   * Queues to work and their concurrency. Defaults to every queue named by
   * `jobs`, each at `concurrency`.
   */
  queues?: Readonly<Record<string, { concurrency?: number; prefetch?: number | 'auto' }>>;
  /** Handlers that perform at once per queue. @defaultValue 10 */
  concurrency?: number;
  /**
   * Jobs leased ahead of the free slots, per queue. A larger prefetch lets
   * one store write lease more jobs and settle more outcomes. The price is
   * holding jobs that other workers could have run. If this worker dies,
   * they wait for their leases to expire, and each counts an abandoned attempt.
   *
   * `"auto"` starts at the queue's concurrency. While the queue has a
   * backlog, it grows when slots run out of ready jobs before a lease
   * returns. It aims at about two lease round trips' worth of starts, at
   * most 500 (or the concurrency, if higher), and starts over when the
   * queue drains. When the oldest waiting job has waited a heartbeat interval, the
   * waiting jobs beyond one per slot are given back to the store. A number
   * fixes the prefetch and turns both off.
   * @defaultValue "auto"
   */
  prefetch?: number | 'auto';
  /** Names this worker in leases, attempts and logs. @defaultValue host:pid:random */
  workerId?: string;
  /**
   * Maximum time an idle queue waits before looking for due jobs, in milliseconds. A scheduled job or
   * retry that comes due sooner wakes the queue at its due time. @defaultValue 1000
   */
  pollIntervalMs?: number;
  /** How often expired leases are recovered, in milliseconds. @defaultValue 2000 */
  sweepIntervalMs?: number;
  /** How often held leases are renewed, in milliseconds. @defaultValue a third of the shortest leaseMs */
  heartbeatIntervalMs?: number;
  /** How long stop() waits for running attempts before aborting and releasing them, in milliseconds. @defaultValue 10_000 */
  shutdownGraceMs?: number;
  logger?: Logger;
  clock?: Clock;
}
