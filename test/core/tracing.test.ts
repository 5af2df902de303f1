import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import * as v from 'valibot';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, defineJob, PermanentError, Worker } from '../../src/index.js';
import { SqliteStore } from '../../src/sqlite.js';
import { silentLogger } from '../support/logs.js';
import { waitFor } from '../support/wait.js';

describe('attempt tracing', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  const folder = mkdtempSync(join(tmpdir(), 'vouch-tracing-'));

  afterAll(async () => {
    trace.disable();
    await provider.shutdown();
    rmSync(folder, { recursive: true, force: true });
  });

  it('records one span per attempt', async () => {
    const store = new SqliteStore({ path: join(folder, 'jobs.db') });
    const job = defineJob({
      name: 'traced',
      payload: v.object({ fail: v.boolean() }),
      perform: (ctx) => {
        if (ctx.payload.fail) throw new PermanentError('rejected on purpose');
        return 'done';
      },
    });
    const client = new Client({ store });
    const good = await client.enqueue(job, { fail: false });
    const bad = await client.enqueue(job, { fail: true });
    const worker = new Worker({ store, jobs: [job], logger: silentLogger(), pollIntervalMs: 20 });
    await worker.start();
    await waitFor('two finished attempt spans', () => exporter.getFinishedSpans().length === 2);
    await worker.stop();
    await store.close();

    const spans = exporter.getFinishedSpans();
    const byJob = new Map(spans.map((span) => [span.attributes['vouch.job.id'], span]));
    expect(spans.map((span) => span.name)).toEqual(['vouch.attempt traced', 'vouch.attempt traced']);
    expect(byJob.get(good.id)?.attributes['vouch.attempt.result']).toBe('completed');
    expect(byJob.get(good.id)?.status.code).toBe(SpanStatusCode.UNSET);
    expect(byJob.get(bad.id)?.attributes['vouch.attempt.result']).toBe('failed');
    expect(byJob.get(bad.id)?.status.code).toBe(SpanStatusCode.ERROR);
    expect(byJob.get(bad.id)?.attributes['vouch.attempt']).toBe(1);
  });

  it('traces once a provider is registered', async () => {
    trace.disable();
    exporter.reset();
    const store = new SqliteStore({ path: join(folder, 'late.db') });
    const job = defineJob({ name: 'late', payload: v.object({ n: v.number() }), perform: (ctx) => ctx.payload.n });
    const client = new Client({ store });
    const worker = new Worker({ store, jobs: [job], logger: silentLogger(), pollIntervalMs: 20 });
    await worker.start();
    try {
      const untraced = await client.enqueue(job, { n: 1 });
      await waitFor('the first job to complete', async () => (await store.getJob(untraced.id))?.state === 'completed');
      expect(exporter.getFinishedSpans()).toEqual([]);

      // Registered while the worker runs: the next attempt gets its span.
      trace.setGlobalTracerProvider(provider);
      const traced = await client.enqueue(job, { n: 2 });
      await waitFor('one finished attempt span', () => exporter.getFinishedSpans().length === 1);
      expect(exporter.getFinishedSpans()[0]?.attributes['vouch.job.id']).toBe(traced.id);
    } finally {
      await worker.stop();
      await store.close();
    }
  });
});
