/**
 * One worker process of the naive queue: take jobs (which marks them done),
 * then send their emails. Same concurrency, SMTP client and polling as the
 * vouch worker, so the only difference between the two runs is the pattern.
 */
import { type NaiveJob, NaiveQueue } from './naive-queue.js';
import { messageIdFor } from './notification-job.js';
import { DEMO_SETTINGS, JOB_HEADER, SENDER } from './settings.js';
import { createFileLogger, createTransport, failStartup, readWorkerArgv, reportReady, stopOnRequest, warmUp } from './worker-process.js';

const args = readWorkerArgv();
const logger = createFileLogger(args);

try {
  const queue = new NaiveQueue(args.store);
  const transport = createTransport(args.smtpPort);
  await warmUp(transport, args.lookupUrl);
  const inFlight = new Set<Promise<void>>();
  let running = true;

  const send = async (job: NaiveJob): Promise<void> => {
    const messageId = messageIdFor(`naive-notification-${job.payload.n}:email`);
    try {
      await transport.sendMail({
        from: SENDER,
        to: job.payload.to,
        subject: `Notification ${job.payload.n}`,
        text: `This is notification ${job.payload.n}, sent by naive job ${job.id}.`,
        messageId: `<${messageId}>`,
        headers: { [JOB_HEADER]: `naive:${job.payload.n}` },
      });
      queue.recordNotification(job.id, messageId);
    } catch (error) {
      // The job already says done; an error here is only a log line, as in any ack-on-receive queue.
      logger.error({ err: error, jobId: job.id }, 'sending or recording failed after the job was marked done');
    }
  };

  const loop = async (): Promise<void> => {
    while (running) {
      const free = DEMO_SETTINGS.concurrency - inFlight.size;
      let taken: NaiveJob[] = [];
      try {
        if (free > 0) taken = queue.take(free, args.workerId);
      } catch (error) {
        // A busy database: try again on the next round, as the vouch worker does.
        logger.error({ err: error }, 'taking jobs failed; retrying');
      }
      for (const job of taken) {
        const task: Promise<void> = send(job).finally(() => inFlight.delete(task));
        inFlight.add(task);
      }
      if (taken.length === 0) {
        const idle = new Promise((resolve) => setTimeout(resolve, DEMO_SETTINGS.pollIntervalMs));
        await (inFlight.size > 0 ? Promise.race([idle, ...inFlight]) : idle);
      } else if (taken.length === free) {
        await Promise.race(inFlight);
      }
    }
  };

  const looping = loop();
  stopOnRequest(logger, async () => {
    running = false;
    await looping;
    await Promise.allSettled(inFlight);
    transport.close();
    queue.close();
  });
  reportReady();
} catch (error) {
  failStartup(logger, error);
}
