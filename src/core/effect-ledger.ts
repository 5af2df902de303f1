import type { Logger } from 'pino';
import type { AttemptAbort } from './attempt-abort.js';
import { LeaseLostError, VouchError } from './errors.js';
import type { AttemptRef, VouchEventEmitter } from './events.js';
import { failpoint } from './failpoints.js';
import { type EffectOptions, idempotencyKeyFor } from './job-context.js';
import { serializeResult } from './payload.js';
import type { EffectRecord, EffectResolution, Lease, Store } from './store.js';

/**
 * The effect ledger as one attempt reads it. It starts from the ledger rows
 * the lease returned and keeps them current as effects run.
 */
export class EffectLedger {
  private readonly known = new Map<string, EffectRecord>();
  private readonly usedThisAttempt = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly lease: Lease,
    private readonly ref: AttemptRef,
    private readonly jobKey: string | null,
    effects: readonly EffectRecord[],
    private readonly abort: AttemptAbort,
    private readonly logger: Logger,
    private readonly events: VouchEventEmitter,
  ) {
    for (const effect of effects) this.known.set(effect.name, effect);
  }

  idempotencyKey(name: string): string {
    return idempotencyKeyFor(this.jobKey, this.lease.jobId, name);
  }

  async run<T>(name: string, fn: (idempotencyKey: string) => Promise<T> | T, options: EffectOptions<T> = {}): Promise<T> {
    if (typeof name !== 'string' || name.length === 0) {
      throw new VouchError(`ctx.effect needs a non-empty name; got ${JSON.stringify(name)}.`);
    }
    if (this.usedThisAttempt.has(name)) {
      throw new VouchError(
        `effect "${name}" was already used in this attempt of job ${this.lease.jobId}. Give each effect of a job its own name, for example "${name}:2".`,
      );
    }
    this.usedThisAttempt.add(name);
    this.throwIfAborted();

    const idempotencyKey = this.idempotencyKey(name);
    const previous = this.known.get(name);
    if (previous?.state === 'done') return previous.result as T;

    let resolution: EffectResolution = 'ran';
    if (previous?.state === 'intent') {
      const settled = await this.settleInDoubt(name, idempotencyKey, options);
      if (settled.found) return settled.result;
      resolution = 'rerun';
    }

    const intent = await this.store.recordEffectIntent(this.lease, { name, idempotencyKey });
    if (intent.status === 'lease_lost') {
      throw new LeaseLostError(`lease lost before effect "${name}" could start; the effect was not run`);
    }
    if (intent.status === 'done') return intent.result as T;
    this.throwIfAborted();

    // Failpoint: the intent is durable and the effect has not started.
    await failpoint('before-effect');
    const result = await fn(idempotencyKey);
    // Failpoint: the effect happened and the ledger does not know yet; a crash here leaves it in doubt.
    await failpoint('after-effect-before-ledger');
    const resultJson = serializeResult(this.ref.name, `result of effect "${name}"`, result ?? null);
    await this.store.recordEffectDone(this.lease, { name, resultJson, resolution });
    this.known.set(name, this.doneRecord(name, idempotencyKey, result, resolution));
    return result;
  }

  /**
   * An intent without a done record means an earlier attempt died between
   * starting the effect and recording it. Its verify decides. Without one,
   * the effect runs again with the same key and an event reports it.
   */
  private async settleInDoubt<T>(
    name: string,
    idempotencyKey: string,
    options: EffectOptions<T>,
  ): Promise<{ found: true; result: T } | { found: false }> {
    if (!options.verify) {
      this.reportInDoubt(name, idempotencyKey, 'rerun');
      return { found: false };
    }
    const check = await options.verify(idempotencyKey);
    if (!check.found) {
      this.reportInDoubt(name, idempotencyKey, 'rerun');
      return { found: false };
    }
    const resultJson = serializeResult(this.ref.name, `result of effect "${name}"`, check.result ?? null);
    // The intent must still be ours to settle: a lost lease means another attempt owns this effect now.
    const intent = await this.store.recordEffectIntent(this.lease, { name, idempotencyKey });
    if (intent.status === 'lease_lost') {
      throw new LeaseLostError(`lease lost while settling in-doubt effect "${name}"`);
    }
    if (intent.status === 'recorded') {
      await this.store.recordEffectDone(this.lease, { name, resultJson, resolution: 'verified' });
    }
    this.reportInDoubt(name, idempotencyKey, 'verify');
    this.known.set(name, this.doneRecord(name, idempotencyKey, check.result, 'verified'));
    return check;
  }

  private reportInDoubt(effect: string, idempotencyKey: string, settledBy: 'verify' | 'rerun'): void {
    const message =
      settledBy === 'verify'
        ? 'in-doubt effect found done by its verify; not running it again'
        : 'in-doubt effect will run again with the same idempotency key';
    this.logger.warn({ effect, idempotencyKey, settledBy }, message);
    this.events.emit('effect:in-doubt', { ...this.ref, effect, idempotencyKey, settledBy });
  }

  private doneRecord(name: string, idempotencyKey: string, result: unknown, resolution: EffectResolution): EffectRecord {
    return {
      jobId: this.lease.jobId,
      name,
      idempotencyKey,
      state: 'done',
      result,
      attempt: this.lease.attempt,
      resolution,
      intentAt: 0,
      doneAt: null,
    };
  }

  private throwIfAborted(): void {
    this.abort.throwIfAborted();
  }
}
