import { Counter, register as defaultRegistry, type Registry } from 'prom-client';
import type { VouchEventEmitter } from '../core/events.js';

/**
 * Counts a worker's events as Prometheus counters (vouch_jobs_completed_total,
 * vouch_job_retries_total, vouch_jobs_failed_total, vouch_attempts_abandoned_total,
 * vouch_leases_lost_total, vouch_effects_in_doubt_total, vouch_payloads_rejected_total,
 * vouch_worker_errors_total). Calling it again with the same registry reuses the counters.
 */
export function registerMetrics(worker: VouchEventEmitter, registry: Registry = defaultRegistry): void {
  const counter = (name: string, help: string, labelNames: string[]) =>
    (registry.getSingleMetric(name) as Counter<string> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });

  const completed = counter('vouch_jobs_completed_total', 'Jobs committed as completed', ['job', 'queue']);
  const retries = counter('vouch_job_retries_total', 'Attempts that errored and scheduled a retry', ['job', 'queue']);
  const failed = counter('vouch_jobs_failed_total', 'Jobs that reached failed', ['job', 'queue']);
  const abandoned = counter('vouch_attempts_abandoned_total', 'Attempts recovered after their lease expired', ['job', 'queue']);
  const leasesLost = counter('vouch_leases_lost_total', 'Attempts that found their lease lost', ['job', 'queue']);
  const inDoubt = counter('vouch_effects_in_doubt_total', 'In-doubt effects settled, by how', ['job', 'settled_by']);
  const rejected = counter('vouch_payloads_rejected_total', 'Stored payloads rejected by their schema', ['job']);
  const errors = counter('vouch_worker_errors_total', 'Errors in the worker background loops', ['loop']);

  worker.on('job:completed', (event) => completed.inc({ job: event.name, queue: event.queue }));
  worker.on('job:retry', (event) => retries.inc({ job: event.name, queue: event.queue }));
  worker.on('job:failed', (event) => failed.inc({ job: event.name, queue: event.queue }));
  worker.on('attempt:abandoned', (event) => abandoned.inc({ job: event.name, queue: event.queue }));
  worker.on('lease:lost', (event) => leasesLost.inc({ job: event.name, queue: event.queue }));
  worker.on('effect:in-doubt', (event) => inDoubt.inc({ job: event.name, settled_by: event.settledBy }));
  worker.on('payload:rejected', (event) => rejected.inc({ job: event.name }));
  worker.on('worker:error', (event) => errors.inc({ loop: event.loop }));
}
