import type { Transporter } from 'nodemailer';
import * as v from 'valibot';
import { countAtSink } from '../../examples/crash-demo/smtp-sink.js';
import { defineJob, type JobDefinition, PermanentError } from '../../src/index.js';

/**
 * What a chaos job does in perform:
 * - `send`: one email through the SMTP sink, as an effect with a verify;
 * - `slow`: waits `ms`, then sends;
 * - `block`: on its first attempt blocks the event loop for `ms` (past its lease), then sends;
 * - `permanent`: throws PermanentError;
 * - `never`: never settles, so the attempt times out.
 */
export const chaosPayload = v.object({
  n: v.pipe(v.number(), v.integer()),
  mode: v.picklist(['send', 'slow', 'block', 'permanent', 'never']),
  ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 0),
});

export type ChaosPayload = v.InferOutput<typeof chaosPayload>;

export const CHAOS_JOB = 'chaos-send';

export interface ChaosJobSettings {
  leaseMs: number;
  timeoutMs: number;
  maxAttempts: number;
}

/** Returns the Message-ID (without brackets) of the email whose effect has this idempotency key. */
export function chaosMessageId(idempotencyKey: string): string {
  return `${idempotencyKey.replace(/[^A-Za-z0-9-]/g, '.')}@chaos.vouch`;
}

export function chaosIdempotencyKey(n: number): string {
  return `chaos-${n}:email`;
}

/** Defines the chaos job; without a transport it can only be enqueued. */
export function chaosJob(
  settings: ChaosJobSettings,
  sink?: { transport: Transporter; lookupUrl: string },
): JobDefinition<ChaosPayload, string, v.InferInput<typeof chaosPayload>> {
  return defineJob({
    name: CHAOS_JOB,
    payload: chaosPayload,
    key: (payload) => `chaos-${payload.n}`,
    leaseMs: settings.leaseMs,
    timeoutMs: settings.timeoutMs,
    retry: { maxAttempts: settings.maxAttempts, baseMs: 50, maxMs: 500 },
    async perform(ctx) {
      if (!sink) throw new Error('this chaos job definition was made for enqueueing only');
      const { mode, ms } = ctx.payload;
      if (mode === 'permanent') throw new PermanentError(`job ${ctx.payload.n} is rejected on purpose`);
      if (mode === 'never') await new Promise(() => {});
      if (mode === 'slow') await new Promise((resolve) => setTimeout(resolve, ms));
      if (mode === 'block' && ctx.attempt === 1) {
        const until = Date.now() + ms;
        while (Date.now() < until) {
          // Blocks the event loop on purpose, so the heartbeat cannot run and the lease expires.
        }
      }
      return ctx.effect<string>(
        'email',
        async (idempotencyKey) => {
          const messageId = chaosMessageId(idempotencyKey);
          await sink.transport.sendMail({
            from: 'chaos@vouch.test',
            to: `job-${ctx.payload.n}@vouch.test`,
            subject: `chaos ${ctx.payload.n}`,
            text: `attempt ${ctx.attempt}`,
            messageId: `<${messageId}>`,
          });
          return messageId;
        },
        {
          verify: async (idempotencyKey) => {
            const messageId = chaosMessageId(idempotencyKey);
            return (await countAtSink(sink.lookupUrl, messageId)) > 0 ? { found: true, result: messageId } : { found: false };
          },
        },
      );
    },
    async verify(_ctx, messageId) {
      return sink !== undefined && (await countAtSink(sink.lookupUrl, messageId)) > 0;
    },
  });
}
