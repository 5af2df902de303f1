/**
 * One vouch worker process of the crash demo. The supervisor starts several
 * and SIGKILLs them at random; nothing here prepares for that.
 */
import { Worker } from '../../src/index.js';
import { notificationJob } from './notification-job.js';
import { DEMO_SETTINGS } from './settings.js';
import { openDemoStore } from './store.js';
import { createFileLogger, createTransport, failStartup, readWorkerArgv, reportReady, stopOnRequest, warmUp } from './worker-process.js';

const args = readWorkerArgv();
const logger = createFileLogger(args);

try {
  const demoStore = await openDemoStore(args.store, { logger });
  const transport = createTransport(args.smtpPort);
  await warmUp(transport, args.lookupUrl);
  const worker = new Worker({
    store: demoStore.store,
    jobs: [notificationJob({ transport, lookupUrl: args.lookupUrl, demoStore })],
    workerId: args.workerId,
    concurrency: DEMO_SETTINGS.concurrency,
    pollIntervalMs: DEMO_SETTINGS.pollIntervalMs,
    sweepIntervalMs: DEMO_SETTINGS.sweepIntervalMs,
    shutdownGraceMs: DEMO_SETTINGS.shutdownGraceMs,
    logger,
  });
  stopOnRequest(logger, async () => {
    await worker.stop();
    transport.close();
    await demoStore.close();
  });
  await worker.start();
  reportReady();
} catch (error) {
  failStartup(logger, error);
}
