/**
 * A worker process for chaos cases. The parent passes its settings as JSON
 * in CHAOS_CONFIG and may kill it at any moment; failpoints come from
 * VOUCH_FAILPOINTS. SIGTERM stops the worker gracefully.
 */
import { createTransport } from 'nodemailer';
import { pino } from 'pino';
import { openStore, Worker } from '../../src/index.js';
import { chaosJob } from './chaos-job.js';

export interface WorkerConfig {
  store: string;
  workerId: string;
  smtpPort: number;
  lookupUrl: string;
  concurrency: number;
  leaseMs: number;
  sweepIntervalMs: number;
  timeoutMs: number;
  maxAttempts: number;
  shutdownGraceMs: number;
  /** Milliseconds added to this worker's clock, to model a clock that is off. */
  clockOffsetMs?: number;
  /** After `afterMs` of running, the clock jumps by `byMs` (negative jumps back). */
  clockJump?: { afterMs: number; byMs: number };
  logFile: string;
}

const config = JSON.parse(process.env.CHAOS_CONFIG ?? '{}') as WorkerConfig;
const startedAt = Date.now();
const clock = () => {
  let now = Date.now() + (config.clockOffsetMs ?? 0);
  if (config.clockJump && Date.now() - startedAt >= config.clockJump.afterMs) now += config.clockJump.byMs;
  return now;
};

const store = await openStore(config.store, { clock });
const transport = createTransport({
  host: '127.0.0.1',
  port: config.smtpPort,
  secure: false,
  ignoreTLS: true,
  pool: true,
  maxConnections: 4,
});
const worker = new Worker({
  store,
  jobs: [chaosJob(config, { transport, lookupUrl: config.lookupUrl })],
  concurrency: config.concurrency,
  workerId: config.workerId,
  pollIntervalMs: 100,
  sweepIntervalMs: config.sweepIntervalMs,
  shutdownGraceMs: config.shutdownGraceMs,
  clock,
  logger: pino(
    { level: 'warn', base: { workerId: config.workerId } },
    pino.destination({ dest: config.logFile, append: true, sync: false }),
  ),
});

process.on('SIGTERM', () => {
  void worker
    .stop()
    .then(() => store.close())
    .then(() => process.exit(0));
});

await worker.start();
process.send?.({ ready: true });
