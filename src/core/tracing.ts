import { createRequire } from 'node:module';
import type * as OpenTelemetry from '@opentelemetry/api';
import type { AttemptResult } from './attempt.js';
import type { AttemptRef } from './events.js';

/**
 * The global slot in which the OpenTelemetry API (version 1) keeps what an
 * application registered, shared by every copy of the package in the
 * process. Reading it first lets a worker that traces nothing skip loading
 * the API, which measured about 5 MiB of resident memory on Node 22.
 */
const REGISTRY = Symbol.for('opentelemetry.js.api.1');

/** The API, loaded on the first attempt that runs with a tracer provider registered. */
let loadedApi: typeof OpenTelemetry | undefined;

/** Returns the OpenTelemetry API, loading it on first use. */
function openTelemetry(): typeof OpenTelemetry {
  loadedApi ??= createRequire(import.meta.url)('@opentelemetry/api') as typeof OpenTelemetry;
  return loadedApi;
}

const FAILED_RESULTS: ReadonlySet<AttemptResult> = new Set(['retry', 'failed', 'lease_lost']);

/**
 * Runs one attempt inside an OpenTelemetry span named `vouch.attempt <job name>`, so
 * the handler's own spans (HTTP calls, queries) nest under it. Without a
 * registered tracer provider the API hands out no-op spans.
 */
export function traceAttempt(ref: AttemptRef, run: () => Promise<AttemptResult | undefined>): Promise<AttemptResult | undefined> {
  // Without a provider, a no-op span still costs a context, a span and a promise per job.
  // The check runs per attempt, so a provider registered later is used from then on.
  if (!tracingRegistered()) return run();
  const { SpanKind, SpanStatusCode, trace } = openTelemetry();
  // Asked for on each attempt, so that an application that replaces its provider is followed.
  const tracer = trace.getTracer('vouch');
  const attributes = {
    'vouch.job.id': ref.jobId,
    'vouch.job.name': ref.name,
    'vouch.queue': ref.queue,
    'vouch.attempt': ref.attempt,
  };
  return tracer.startActiveSpan(`vouch.attempt ${ref.name}`, { kind: SpanKind.CONSUMER, attributes }, async (span) => {
    try {
      const result = await run();
      // undefined: the store failed and the outcome was not written (runAttempt logged it).
      span.setAttribute('vouch.attempt.result', result ?? 'unrecorded');
      if (result === undefined || FAILED_RESULTS.has(result)) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: result ?? 'unrecorded' });
      }
      return result;
    } catch (error) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** Tells whether the application registered a tracer provider. The API's default proxy has no delegate until then. */
export function tracingRegistered(): boolean {
  const registry = (globalThis as Record<symbol, { trace?: unknown } | undefined>)[REGISTRY];
  if (registry?.trace === undefined) return false;
  const { trace, ProxyTracerProvider } = openTelemetry();
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegateTracer('vouch') !== undefined;
}
