import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Client } from '../../src/core/client.js';
import { defineJob } from '../../src/core/job-definition.js';
import type { Store } from '../../src/core/store.js';
import type { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { Worker } from '../../src/worker/worker.js';
import { newJob } from '../support/jobs.js';
import { silentLogger } from '../support/logs.js';
import { POSTGRES_TEST_URL, postgresAvailable, postgresHarness } from '../support/postgres-harness.js';
import type { StoreHarness } from '../support/stores.js';
import { sleep, waitFor } from '../support/wait.js';
import { sideQuery } from './pg-bed.js';

/**
 * LISTEN/NOTIFY: an enqueue in one process wakes idle workers in another
 * within milliseconds, a burst of enqueues is one notification per queue and
 * statement, and the listening connection comes back after it is lost.
 */
describe.skipIf(!postgresAvailable())('postgres: wake-ups', () => {
  let harness: StoreHarness;
  let producer: PostgresStore;
  let consumer: Store<any>;
  let location: string;

  beforeAll(() => {
    harness = postgresHarness();
  });
  afterAll(() => harness.cleanup());
  beforeEach(async () => {
    const opened = await harness.open();
    producer = opened.store as PostgresStore;
    location = opened.location;
    consumer = (await harness.open({ shareWith: location })).store;
  });

  /** Records the queues the consumer is woken for; waits until its listening connection is up. */
  async function listen(): Promise<{ woken: (string | null)[]; stop: () => void }> {
    const woken: (string | null)[] = [];
    const stop = consumer.onWake((queue) => woken.push(queue));
    await waitFor('the listening connection', async () => (await listeners()).length === 1);
    return { woken, stop };
  }

  /** The consumer's listening backends, found by the application name the harness gives its pool. */
  function listeners(): Promise<{ pid: number }[]> {
    return sideQuery(POSTGRES_TEST_URL, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN %'`, [
      `vouch-test:${producer.schema}:listen`,
    ]);
  }

  describe('an idle worker in another process', () => {
    let worker: Worker | undefined;
    afterEach(async () => {
      await worker?.stop({ graceMs: 0 });
    });

    it('starts a new job without polling', async () => {
      const started: number[] = [];
      const job = defineJob({ name: 'ping', payload: z.object({}), perform: () => void started.push(Date.now()) });
      worker = new Worker({ store: consumer, jobs: [job], pollIntervalMs: 3_600_000, logger: silentLogger() });
      await worker.start();
      await waitFor('the listening connection', async () => (await listeners()).length === 1);
      await sleep(200); // the worker's first lease found nothing and it is waiting

      const enqueuedAt = Date.now();
      await new Client({ store: producer }).enqueue(job, {});
      await waitFor('the job to start', () => started.length === 1, { timeoutMs: 3000 });
      expect(started[0]! - enqueuedAt).toBeLessThan(1000);
    });
  });

  it('notifies once per queue for a bulk enqueue', async () => {
    const { woken, stop } = await listen();
    try {
      await producer.enqueue([
        ...Array.from({ length: 600 }, () => newJob({ queue: 'mail' })),
        ...Array.from({ length: 400 }, () => newJob({ queue: 'billing' })),
        ...Array.from({ length: 50 }, () => newJob({ queue: 'later', runAt: Date.now() + 60_000 })),
      ]);
      await waitFor('the wake-ups', () => woken.length >= 3);
      await sleep(300);
      // The queue whose jobs are only scheduled is woken too, so that its workers learn when the first comes due.
      expect([...woken].sort()).toEqual(['billing', 'later', 'mail']);
    } finally {
      stop();
    }
  });

  it('wakes the queue of jobs the sweep makes available', async () => {
    // A lease that runs while the sweep moves a due job to available skips the locked row and finds
    // nothing, so only this wake makes an idle worker lease it before its next poll.
    await producer.enqueue([newJob({ queue: 'soon', runAt: Date.now() + 100 })]);
    const { woken, stop } = await listen();
    try {
      await sleep(200);
      expect(woken).not.toContain('soon');
      await producer.sweep();
      await waitFor('the wake-up', () => woken.includes('soon'));
      expect((await producer.countByState()).available).toBe(1);
    } finally {
      stop();
    }
  });

  it('reconnects a terminated listening connection', async () => {
    const { woken, stop } = await listen();
    try {
      const [victim] = await listeners();
      await sideQuery(POSTGRES_TEST_URL, 'SELECT pg_terminate_backend($1)', [victim!.pid]);
      // Notifications sent while nobody listened are lost; the reconnect wakes every queue instead.
      await waitFor('the reconnect wake-up', () => woken.includes(null), { timeoutMs: 5000 });
      const [replacement] = await listeners();
      expect(replacement?.pid).not.toBe(victim?.pid);

      woken.length = 0;
      await producer.enqueue([newJob({ queue: 'after' })]);
      await waitFor('a wake-up through the new connection', () => woken.includes('after'));
    } finally {
      stop();
    }
  });

  it('closes the listener with the last subscriber', async () => {
    const { stop } = await listen();
    stop();
    await waitFor('the listening connection to close', async () => (await listeners()).length === 0);
  });
});
