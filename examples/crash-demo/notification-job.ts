/**
 * The job the demo runs: send one email and record it in the application's
 * notifications table. The email is an effect with a verify, so a retry after
 * a crash first asks the SMTP sink whether the earlier attempt's email arrived.
 */
import type { Transporter } from 'nodemailer';
import * as v from 'valibot';
import { defineJob, type JobDefinition } from '../../src/index.js';
import { DEMO_SETTINGS, JOB_HEADER, SENDER } from './settings.js';
import { countAtSink } from './smtp-sink.js';
import type { DemoStore } from './store.js';

// valibot rather than zod: it loads in a few milliseconds, and every worker the demo kills is replaced by a fresh process.
export const notificationPayload = v.object({
  /** The notification's number in the run, from 1. */
  n: v.pipe(v.number(), v.integer(), v.minValue(1)),
  to: v.pipe(v.string(), v.email()),
});

export type NotificationPayload = v.InferOutput<typeof notificationPayload>;

export interface NotificationResult {
  messageId: string;
}

/** What perform needs at run time; only worker processes have it. */
export interface NotificationDependencies {
  transport: Transporter;
  /** Base URL of the SMTP sink's lookup endpoint. */
  lookupUrl: string;
  demoStore: DemoStore;
}

export const NOTIFICATION_JOB = 'send-notification';

/**
 * Defines the job. Without dependencies the definition can enqueue but not
 * perform, which is all the demo's own process needs.
 */
export function notificationJob(deps?: NotificationDependencies): JobDefinition<NotificationPayload, NotificationResult> {
  return defineJob({
    name: NOTIFICATION_JOB,
    payload: notificationPayload,
    key: (payload) => `notification-${payload.n}`,
    leaseMs: DEMO_SETTINGS.leaseMs,
    retry: { maxAttempts: DEMO_SETTINGS.maxAttempts, baseMs: 100, maxMs: 1000 },
    async perform(ctx) {
      if (!deps) throw new Error('this definition of send-notification was made for enqueueing only; pass dependencies to perform it');
      const { transport, lookupUrl, demoStore } = deps;
      const messageId = await ctx.effect<string>(
        'email',
        async (idempotencyKey) => {
          const id = messageIdFor(idempotencyKey);
          await transport.sendMail({
            from: SENDER,
            to: ctx.payload.to,
            subject: `Notification ${ctx.payload.n}`,
            text: `This is notification ${ctx.payload.n}, sent by job ${ctx.jobId}.`,
            messageId: `<${id}>`,
            headers: { [JOB_HEADER]: `vouch:${ctx.payload.n}` },
          });
          return id;
        },
        {
          // Settles an in-doubt email: if the sink has it, the earlier attempt's send went through.
          verify: async (idempotencyKey) => {
            const id = messageIdFor(idempotencyKey);
            return (await countAtSink(lookupUrl, id)) > 0 ? { found: true, result: id } : { found: false };
          },
        },
      );
      ctx.transaction((tx) => demoStore.recordNotification(tx, { jobId: ctx.jobId, messageId }));
      return { messageId };
    },
    // The whole outcome: the email is at the receiving server, not just handed to the client library.
    async verify(_ctx, result) {
      if (!deps) return false;
      return (await countAtSink(deps.lookupUrl, result.messageId)) > 0;
    },
  });
}

/**
 * The Message-ID (without angle brackets) of the email whose effect has this
 * idempotency key. Characters a Message-ID may not hold, such as the colon
 * in `notification-7:email`, become dots.
 */
export function messageIdFor(idempotencyKey: string): string {
  return `${idempotencyKey.replace(/[^A-Za-z0-9-]/g, '.')}@crash-demo.vouch`;
}
