import { afterAll, afterEach, beforeEach, describe } from 'vitest';
import { Client, type ClientOptions } from '../../src/core/client.js';
import type { Store } from '../../src/core/store.js';
import { Worker } from '../../src/worker/worker.js';
import type { WorkerOptions } from '../../src/worker/worker-options.js';
import { TestClock } from './clock.js';
import { EventLog } from './events.js';
import { allHarnesses } from './harnesses.js';
import { silentLogger } from './logs.js';
import type { StoreHarness } from './stores.js';

export type TestWorkerOptions = Partial<Omit<WorkerOptions, 'jobs'>> & Pick<WorkerOptions, 'jobs'>;

/**
 * What one contract test works with: a fresh, empty store on a frozen test
 * clock, a client on the same clock, and workers that are stopped after the
 * test. Fields are replaced before each test.
 */
export class StoreEnv {
  clock!: TestClock;
  store!: Store<any>;
  /** The store's address, as `vouch audit --store` takes it. */
  location!: string;
  client!: Client;
  private workers: Worker[] = [];

  constructor(readonly harness: StoreHarness) {}

  async reset(): Promise<void> {
    this.clock = new TestClock();
    const { store, location } = await this.harness.open({ clock: this.clock.now });
    this.store = store;
    this.location = location;
    this.client = this.newClient();
  }

  newClient(options: Partial<ClientOptions> = {}): Client {
    return new Client({ store: this.store, clock: this.clock.now, ...options });
  }

  /** Another connection to this test's store, as a second process would have. */
  async openShared(): Promise<Store<any>> {
    return (await this.harness.open({ clock: this.clock.now, shareWith: this.location })).store;
  }

  /** Builds a worker on this test's store and clock with short poll and sweep intervals; the test starts it. */
  worker(options: TestWorkerOptions): { worker: Worker; events: EventLog } {
    const worker = new Worker({
      store: this.store,
      clock: this.clock.now,
      logger: silentLogger(),
      pollIntervalMs: 10,
      sweepIntervalMs: 20,
      shutdownGraceMs: 2000,
      ...options,
    });
    this.workers.push(worker);
    return { worker, events: new EventLog(worker) };
  }

  /** True when no worker of this test holds a lease: every attempt has written its outcome and emitted its events. */
  get workersIdle(): boolean {
    return this.workers.every((worker) => worker.activeCount === 0);
  }

  /** Builds and starts a worker. */
  async startWorker(options: TestWorkerOptions): Promise<{ worker: Worker; events: EventLog }> {
    const started = this.worker(options);
    await started.worker.start();
    return started;
  }

  async dispose(): Promise<void> {
    const workers = this.workers;
    this.workers = [];
    await Promise.all(workers.map((worker) => worker.stop({ graceMs: 0 })));
  }
}

/**
 * Declares `body` once per store harness. A harness whose store is not
 * reachable is skipped, and the skipped suite's name says why.
 */
export function describeEachStore(title: string, body: (env: StoreEnv) => void): void {
  for (const harness of allHarnesses()) {
    const skipped = harness.available ? '' : ` (skipped: ${harness.unavailableReason ?? `the ${harness.kind} store is not reachable`})`;
    describe.skipIf(!harness.available)(`${title} [${harness.kind}]${skipped}`, () => {
      const env = new StoreEnv(harness);
      beforeEach(() => env.reset());
      afterEach(() => env.dispose());
      afterAll(() => harness.cleanup());
      body(env);
    });
  }
}
