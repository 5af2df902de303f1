/**
 * One child process of the benchmark: loads one system's adapter and runs one
 * task (see protocol.ts). Run by bench/run.ts as
 * `<node> --import tsx [--import bench/node22/register.mjs] bench/systems/child.ts`.
 */
import { openSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Adapter, AdapterContext, BenchPayload } from './adapter.js';
import { type ChildMessage, now, type ParentMessage, type PrepareTask, type SteadyTask, type Task, type WorkTask } from './protocol.js';

const task = JSON.parse(process.env.BENCH_TASK ?? '{}') as Task;

function send(message: ChildMessage): void {
  process.send?.(message);
}

async function loadAdapter(): Promise<Adapter> {
  const context: AdapterContext = { dir: task.dir, name: task.name, mode: task.mode };
  switch (task.kind) {
    case 'vouch-sqlite': {
      const { VouchAdapter, sqliteStoreKind } = await import('./vouch.js');
      return new VouchAdapter(sqliteStoreKind(context));
    }
    case 'vouch-postgres': {
      const { VouchAdapter, postgresStoreKind } = await import('./vouch.js');
      return new VouchAdapter(postgresStoreKind());
    }
    case 'bullmq-redis':
    case 'bullmq-postgres': {
      const { BullmqAdapter } = await import('./bullmq.js');
      return new BullmqAdapter(task.kind === 'bullmq-redis' ? 'redis' : 'postgres');
    }
    case 'pg-boss': {
      const { PgBossAdapter } = await import('./pg-boss.js');
      return new PgBossAdapter(context, task.fastRecovery === true);
    }
    case 'graphile-worker': {
      const { GraphileWorkerAdapter } = await import('./graphile-worker.js');
      return new GraphileWorkerAdapter(context);
    }
  }
}

const parentMessages: ParentMessage[] = [];
const parentWaiters: (() => void)[] = [];
process.on('message', (message: ParentMessage) => {
  parentMessages.push(message);
  for (const wake of parentWaiters.splice(0)) wake();
});
// The parent's death must not leave workers running.
process.on('disconnect', () => process.exit(3));

async function nextParentMessage(cmd: ParentMessage['cmd']): Promise<void> {
  for (;;) {
    const index = parentMessages.findIndex((message) => message.cmd === cmd);
    if (index >= 0) {
      parentMessages.splice(index, 1);
      return;
    }
    await new Promise<void>((resolve) => parentWaiters.push(resolve));
  }
}

async function prepare(adapter: Adapter, prepareTask: PrepareTask): Promise<Record<string, unknown>> {
  if (prepareTask.reset) await adapter.reset();
  await adapter.open();
  const from = prepareTask.from ?? 0;
  let enqueueMs = 0;
  for (let offset = 0; offset < prepareTask.count; offset += prepareTask.chunk) {
    const size = Math.min(prepareTask.chunk, prepareTask.count - offset);
    const payloads: BenchPayload[] = Array.from({ length: size }, (_, index) => ({ i: from + offset + index }));
    const startedAt = now();
    await adapter.enqueueMany(payloads);
    enqueueMs += now() - startedAt;
  }
  return { count: prepareTask.count, enqueueMs };
}

async function steady(adapter: Adapter, steadyTask: SteadyTask): Promise<Record<string, unknown>> {
  await adapter.open();
  const intervalMs = 1000 / steadyTask.ratePerSecond;
  const total = Math.round((steadyTask.ratePerSecond * steadyTask.durationMs) / 1000);
  const startAt = now() + 20;
  const pending: Promise<void>[] = [];
  let errors = 0;
  for (let i = 0; i < total; i += 1) {
    const due = startAt + i * intervalMs;
    const wait = due - now();
    if (wait > 0.5) await sleep(wait);
    pending.push(
      adapter.enqueueOne({ i, t: now() }).catch(() => {
        errors += 1;
      }),
    );
  }
  await Promise.all(pending);
  return { sent: total, errors, elapsedMs: now() - startAt };
}

async function work(adapter: Adapter, workTask: WorkTask): Promise<Record<string, unknown>> {
  await adapter.open();
  if (workTask.recoverFirst) await adapter.recoverAfterKill?.();
  const execFd = workTask.execLog ? openSync(workTask.execLog, 'a') : undefined;
  const latencies: number[] = [];
  let started = 0;
  let firstAt: number | undefined;
  let countReached: (() => void) | undefined;
  const reached = new Promise<void>((resolve) => {
    countReached = resolve;
  });
  const target = 'count' in workTask.until ? workTask.until.count : Number.POSITIVE_INFINITY;
  let targetAt: number | undefined;
  let readyAt = Number.POSITIVE_INFINITY;
  const capMs = 'capMs' in workTask.until ? workTask.until.capMs : Number.POSITIVE_INFINITY;
  // The cap runs from the first job's start; a system that starts nothing within a minute has failed.
  const deadline = () => (firstAt === undefined ? readyAt + capMs + 60_000 : firstAt + capMs);

  const body = async (id: string, payload: BenchPayload): Promise<void> => {
    const at = now();
    firstAt ??= at;
    started += 1;
    if (execFd !== undefined) writeSync(execFd, `${id}\n`);
    if (payload.t !== undefined) latencies.push(at - payload.t);
    if (started === workTask.progressAt) send({ type: 'progress', started, at });
    if (started === target) {
      targetAt = at;
      countReached?.();
    }
    // A worker whose store calls are synchronous (better-sqlite3) can run job after job in microtasks
    // without ever returning to the event loop, which would hold back the timer that ends the measurement
    // and the IPC message that reports it. Once the measurement is over, every job yields once.
    if (targetAt !== undefined || at >= deadline()) await new Promise((resolve) => setImmediate(resolve));
    if (workTask.job === 'hang') {
      send({ type: 'job-start', at, id });
      if (workTask.hang) await new Promise(() => {});
    } else if (workTask.job === 'io') {
      await sleep(5);
    }
  };

  const settings = await adapter.startWorker({
    concurrency: workTask.concurrency,
    body,
    variant: workTask.variant,
    fastRecovery: workTask.fastRecovery,
  });
  readyAt = now();
  send({ type: 'ready', settings, version: process.version });

  if (workTask.until.kind === 'parent') {
    await nextParentMessage('finish');
    return { started, firstAt, latencies };
  }
  if (workTask.until.kind === 'empty') {
    const stopAt = readyAt + capMs;
    let pending = await adapter.pendingCount();
    while (pending > 0 && now() < stopAt) {
      await sleep(100);
      pending = await adapter.pendingCount();
    }
    return { started, firstAt, endAt: now(), completed: started, capped: pending > 0, pending };
  }

  const { count } = workTask.until;
  const finished = new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (now() >= deadline()) {
        clearInterval(check);
        resolve();
      }
    }, 5);
    void reached.then(() => {
      clearInterval(check);
      resolve();
    });
  });
  await finished;

  if (workTask.until.kind === 'started') {
    return { started, firstAt, endAt: targetAt ?? now(), completed: started, capped: targetAt === undefined };
  }
  // Every job has started (or the cap passed): wait until the store records them all completed.
  let pending = await adapter.pendingCount();
  while (pending > 0 && now() < deadline()) {
    await sleep(2);
    pending = await adapter.pendingCount();
  }
  const endAt = now();
  return { started, firstAt, endAt, completed: count - pending, capped: pending > 0 };
}

async function main(): Promise<void> {
  const adapter = await loadAdapter();
  let result: Record<string, unknown>;
  if (task.role === 'prepare') result = await prepare(adapter, task);
  else if (task.role === 'steady') result = await steady(adapter, task);
  else result = await work(adapter, task);
  send({ type: 'result', ...result, maxRssKb: process.resourceUsage().maxRSS });
  await nextParentMessage('exit');
  // No graceful close: every measurement starts from a reset store, and a close can take seconds (blocking reads, pools).
  process.exit(0);
}

main().catch((error: unknown) => {
  send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  setTimeout(() => process.exit(1), 100);
});
