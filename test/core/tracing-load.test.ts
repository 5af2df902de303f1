import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const folder = mkdtempSync(join(tmpdir(), 'vouch-tracing-load-'));
const index = pathToFileURL(join(import.meta.dirname, '../../src/index.ts')).href;
const sqlite = pathToFileURL(join(import.meta.dirname, '../../src/sqlite.ts')).href;
// The child script lives in a temporary folder, so it names packages by their resolved files.
const resolvePackage = (name: string) => pathToFileURL(createRequire(import.meta.url).resolve(name)).href;

// Records every ESM resolution of the OpenTelemetry API in the child, from the loader thread.
const HOOK = `
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('@opentelemetry/api')) appendFileSync(process.env.VOUCH_OTEL_LOG, specifier + '\\n');
  return next(specifier, context);
}`;

/** Runs one job through a worker in a fresh process, and reports whether the OpenTelemetry API was loaded and the spans recorded. */
const CHILD = `
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOK)}));
const { Client, defineJob, Worker } = await import(${JSON.stringify(index)});
const { SqliteStore } = await import(${JSON.stringify(sqlite)});
const { pino } = await import(${JSON.stringify(resolvePackage('pino'))});
if (process.argv[2] === 'registered') {
  const { trace } = await import(${JSON.stringify(resolvePackage('@opentelemetry/api'))});
  const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = await import(${JSON.stringify(resolvePackage('@opentelemetry/sdk-trace-base'))});
  globalThis.exporter = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(globalThis.exporter)] }));
}
const store = new SqliteStore({ path: process.env.VOUCH_DB });
const job = defineJob({ name: 'plain', payload: { '~standard': { version: 1, vendor: 'test', validate: (value) => ({ value }) } }, perform: () => 'ok' });
await new Client({ store }).enqueue(job, {});
const worker = new Worker({ store, jobs: [job], logger: pino({ level: 'silent' }), pollIntervalMs: 20 });
await new Promise((resolve) => { worker.on('job:completed', resolve); worker.start(); });
await worker.stop();
await store.close();
const { createRequire } = await import('node:module');
const required = Object.keys(createRequire(import.meta.url).cache).some((file) => file.includes('@opentelemetry/api/'));
const spans = globalThis.exporter?.getFinishedSpans().map((span) => span.name) ?? [];
console.log(JSON.stringify({ required, spans }));
`;

function runChild(mode: 'plain' | 'registered'): { resolved: string[]; required: boolean; spans: string[] } {
  const log = join(folder, `${mode}.log`);
  writeFileSync(log, '');
  const script = join(folder, 'child.mts');
  writeFileSync(script, CHILD);
  const child = spawnSync(process.execPath, ['--import', 'tsx', script, mode], {
    cwd: join(import.meta.dirname, '../..'),
    env: { ...process.env, VOUCH_OTEL_LOG: log, VOUCH_DB: join(folder, `${mode}.db`) },
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(child.status, child.stderr).toBe(0);
  const report = JSON.parse(child.stdout.trim().split('\n').at(-1) ?? '{}') as { required: boolean; spans: string[] };
  return { resolved: readFileSync(log, 'utf8').split('\n').filter(Boolean), required: report.required, spans: report.spans };
}

describe('OpenTelemetry loading', () => {
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it('skips the API without a provider', () => {
    const { resolved, required } = runChild('plain');
    expect(resolved).toEqual([]);
    expect(required).toBe(false);
  });

  it('traces through a provider registered first', () => {
    const { spans } = runChild('registered');
    expect(spans).toEqual(['vouch.attempt plain']);
  });
});
