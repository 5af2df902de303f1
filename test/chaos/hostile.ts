import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import * as v from 'valibot';
import { Client, defineJob, InvalidPayloadError, type JobDefinition, openStore, type Store, Worker } from '../../src/index.js';
import { checkHistory, type Violation } from './checker.js';
import { POSTGRES_URL, type StoreKind } from './environment.js';
import type { AcceptedJob } from './history.js';
import { readStoreHistory } from './history.js';
import type { CaseReport } from './run.js';

export interface HostileCase {
  name: string;
  run(kind: StoreKind): Promise<CaseReport>;
}

const quiet = pino({ level: 'silent' });

/** Opens a fresh store for one hostile case and returns it with its teardown. */
async function freshStore(kind: StoreKind): Promise<{ store: Store<any>; dispose(): Promise<void> }> {
  const folder = mkdtempSync(join(tmpdir(), 'vouch-hostile-'));
  const schema = `hostile_${Math.random().toString(16).slice(2, 10)}`;
  const store = await openStore(kind === 'postgres' ? `${POSTGRES_URL}?schema=${schema}` : join(folder, 'jobs.db'));
  return {
    store,
    async dispose() {
      await store.close();
      if (kind === 'postgres') {
        const { default: pg } = await import('pg');
        const client = new pg.Client({ connectionString: POSTGRES_URL });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await client.end();
      }
      rmSync(folder, { recursive: true, force: true });
    },
  };
}

/** Runs a worker until every job in the store is terminal, or 20 s pass. */
async function drain(store: Store<any>, jobs: JobDefinition<any, any>[]): Promise<void> {
  const worker = new Worker({ store, jobs, pollIntervalMs: 20, sweepIntervalMs: 200, logger: quiet });
  await worker.start();
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const counts = await store.countByState();
    if (counts.scheduled + counts.available + counts.running + counts.retryable === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await worker.stop();
}

async function report(
  name: string,
  kind: StoreKind,
  store: Store<any>,
  accepted: AcceptedJob[],
  expectations: Violation[],
  faults: number,
  startedAt: number,
): Promise<CaseReport> {
  const fromStore = await readStoreHistory(
    store,
    accepted.map((job) => job.jobId),
  );
  const history = { leaseMs: 10_000, sweepIntervalMs: 200, accepted, ...fromStore, sink: [], kills: [] };
  return {
    case: name,
    store: kind,
    jobs: accepted.length,
    faults,
    violations: [...checkHistory(history), ...expectations],
    durationMs: Date.now() - startedAt,
  };
}

const echoJob = defineJob({
  name: 'hostile-echo',
  payload: v.object({ text: v.string(), list: v.optional(v.array(v.unknown())) }),
  retry: { maxAttempts: 1 },
  perform: (ctx) => ctx.payload.text,
});

/** Hostile strings that must be stored and returned byte for byte. */
const HOSTILE_STRINGS = [
  "'); DROP TABLE vouch_jobs; --",
  'NUL\u0000inside',
  '\u{1F525}'.repeat(50_000),
  '"quoted" \\ back\\slash',
  '\u202Eright-to-left',
];

const payloadCase: HostileCase = {
  name: 'hostile payloads',
  async run(kind) {
    const startedAt = Date.now();
    const { store, dispose } = await freshStore(kind);
    const expectations: Violation[] = [];
    const accepted: AcceptedJob[] = [];
    try {
      const client = new Client({ store });
      const cyclic: Record<string, unknown> = { text: 'cycle' };
      cyclic.self = cyclic;
      const rejected: [string, unknown, RegExp][] = [
        ['failing validation', { text: 42 }, /invalid payload for job "hostile-echo": text/],
        ['BigInt', { text: 'x', list: [1n] }, /list\[0\] is a BigInt/],
        ['cycle', { text: 'x', list: [cyclic] }, /cycle/],
        ['function', { text: 'x', list: [() => 1] }, /is a function/],
        ['undefined in an array', { text: 'x', list: [undefined] }, /list\[0\] is undefined/],
        ['a Date', { text: 'x', list: [new Date(0)] }, /list\[0\] is a Date/],
        ['a Map', { text: 'x', list: [new Map([['a', 1]])] }, /list\[0\] is a Map/],
        ['a Set', { text: 'x', list: [new Set([1])] }, /list\[0\] is a Set/],
        ['over the size limit', { text: 'x'.repeat(1024 * 1024 + 1) }, /over the limit of 1048576 bytes/],
      ];
      for (const [label, payload, message] of rejected) {
        const good = await client.enqueue(echoJob, { text: `before ${label}` });
        accepted.push({ jobId: good.id, effectKey: null, effectOnce: true });
        try {
          await client.enqueue(echoJob, payload as never);
          expectations.push({ invariant: 'one-terminal-state', jobIds: [], detail: `payload with ${label} was accepted` });
        } catch (error) {
          if (!(error instanceof InvalidPayloadError) || !message.test(error.message)) {
            expectations.push({
              invariant: 'one-terminal-state',
              jobIds: [],
              detail: `payload with ${label} failed with an unclear error: ${(error as Error).message.slice(0, 200)}`,
            });
          }
        }
      }
      const hostileIds: [string, string][] = [];
      for (const text of HOSTILE_STRINGS) {
        const job = await client.enqueue(echoJob, { text });
        accepted.push({ jobId: job.id, effectKey: null, effectOnce: true });
        hostileIds.push([job.id, text]);
      }
      await drain(store, [echoJob]);
      for (const [id, text] of hostileIds) {
        const job = await store.getJob(id);
        if ((job?.payload as { text?: string } | undefined)?.text !== text || job?.result !== text) {
          expectations.push({
            invariant: 'one-terminal-state',
            jobIds: [id],
            detail: `hostile string ${JSON.stringify(text.slice(0, 20))} did not round-trip`,
          });
        }
      }
      return await report(this.name, kind, store, accepted, expectations, rejected.length + HOSTILE_STRINGS.length, startedAt);
    } finally {
      await dispose();
    }
  },
};

const namesCase: HostileCase = {
  name: 'hostile names',
  async run(kind) {
    const startedAt = Date.now();
    const { store, dispose } = await freshStore(kind);
    const expectations: Violation[] = [];
    const accepted: AcceptedJob[] = [];
    try {
      const odd = defineJob({
        name: `send "quoted" 'job' with spaces`,
        queue: `queue "with" 'quotes' and spaces`,
        payload: v.object({}),
        perform: () => 'ok',
      });
      const job = await new Client({ store }).enqueue(odd, {});
      accepted.push({ jobId: job.id, effectKey: null, effectOnce: true });
      await drain(store, [odd]);
      for (const [what, build] of [
        ['job name', () => defineJob({ name: 'n'.repeat(1000), payload: v.object({}), perform: () => 0 })],
        ['queue name', () => defineJob({ name: 'long-queue', queue: 'q'.repeat(1000), payload: v.object({}), perform: () => 0 })],
      ] as const) {
        try {
          build();
          expectations.push({ invariant: 'one-terminal-state', jobIds: [], detail: `a 1,000-character ${what} was accepted` });
        } catch (error) {
          if (!/1000 characters long; the limit is 200/.test((error as Error).message)) {
            expectations.push({
              invariant: 'one-terminal-state',
              jobIds: [],
              detail: `a 1,000-character ${what} failed unclearly: ${(error as Error).message}`,
            });
          }
        }
      }
      return await report(this.name, kind, store, accepted, expectations, 3, startedAt);
    } finally {
      await dispose();
    }
  },
};

const handlerCase: HostileCase = {
  name: 'odd throws and unknown job names',
  async run(kind) {
    const startedAt = Date.now();
    const { store, dispose } = await freshStore(kind);
    const expectations: Violation[] = [];
    const accepted: AcceptedJob[] = [];
    try {
      const getterBomb = {
        get message(): string {
          throw new Error('getter exploded');
        },
      };
      const throws: [string, unknown, RegExp][] = [
        ['null', null, /non-Error value: null/],
        ['a string', 'plain string', /non-Error value: "plain string"/],
        ['a throwing getter', getterBomb, /non-Error value/],
      ];
      const definitions = throws.map(([label, value]) =>
        defineJob({
          name: `throws ${label}`,
          payload: v.object({}),
          retry: { maxAttempts: 1 },
          perform: () => {
            throw value;
          },
        }),
      );
      const ghost = defineJob({
        name: 'no-worker-knows-me',
        payload: v.object({}),
        retry: { maxAttempts: 2, baseMs: 10, maxMs: 10 },
        perform: () => 0,
      });
      const client = new Client({ store });
      const ids: string[] = [];
      for (const definition of [...definitions, ghost]) {
        const job = await client.enqueue(definition, {});
        accepted.push({ jobId: job.id, effectKey: null, effectOnce: true });
        ids.push(job.id);
      }
      await drain(store, definitions);
      const reasons = [...throws.map(([, , reason]) => reason), /no job definition named "no-worker-knows-me"/];
      for (const [index, id] of ids.entries()) {
        const job = await store.getJob(id);
        if (job?.state !== 'failed' || !reasons[index]!.test(job.lastError ?? '')) {
          expectations.push({
            invariant: 'one-terminal-state',
            jobIds: [id],
            detail: `expected failed with ${reasons[index]}; got ${job?.state}: ${job?.lastError}`,
          });
        }
      }
      return await report(this.name, kind, store, accepted, expectations, ids.length, startedAt);
    } finally {
      await dispose();
    }
  },
};

const brokenFileCase: HostileCase = {
  name: 'read-only, full and corrupt store files',
  async run(kind) {
    const startedAt = Date.now();
    const expectations: Violation[] = [];
    if (kind !== 'sqlite') return { case: this.name, store: kind, jobs: 0, faults: 0, violations: [], durationMs: 0 };
    const folder = mkdtempSync(join(tmpdir(), 'vouch-broken-'));
    try {
      const corrupt = join(folder, 'corrupt.db');
      writeFileSync(corrupt, Buffer.alloc(8192, 0x5a));
      await expectOpenError(corrupt, /could not open SQLite database .*corrupt\.db.*not a database/, 'corrupt', expectations);

      const missingFolder = join(folder, 'no', 'such', 'folder', 'jobs.db');
      await expectOpenError(
        missingFolder,
        /could not open SQLite database .*jobs\.db.*Check that its folder exists/,
        'in a missing folder',
        expectations,
      );

      // A folder that exists but takes no new files: the hint must be about writing, not about a missing folder.
      const closedFolder = join(folder, 'closed');
      mkdirSync(closedFolder);
      const reopen = makeReadOnly([closedFolder]);
      try {
        await expectOpenError(
          join(closedFolder, 'jobs.db'),
          /could not open SQLite database .*jobs\.db.*writable by this process/,
          'new in a read-only folder',
          expectations,
        );
      } finally {
        reopen();
      }

      // A read-only file in a read-only folder: in WAL mode SQLite writes beside the file first, so the folder
      // must be read-only too. Root ignores file modes, so as root both are made immutable (chattr +i) instead.
      const readOnlyFolder = join(folder, 'read-only');
      mkdirSync(readOnlyFolder);
      const readOnly = join(readOnlyFolder, 'read-only.db');
      const seeded = await openStore(readOnly);
      await seeded.close();
      const unlock = makeReadOnly([readOnly, readOnlyFolder]);
      try {
        await expectOpenError(
          readOnly,
          /could not open SQLite database .*read-only\.db.*writable by this process/,
          'read-only',
          expectations,
        );
      } finally {
        unlock();
      }

      // A full disk, made with max_page_count: the enqueue fails loudly and the jobs stored before it stay intact.
      const full = join(folder, 'full.db');
      const { SqliteStore } = await import('../../src/sqlite.js');
      const fullStore = new SqliteStore({ path: full });
      const client = new Client({ store: fullStore });
      const before = await client.enqueue(echoJob, { text: 'stored before the disk filled' });
      const pages = fullStore.db.pragma('page_count', { simple: true }) as number;
      fullStore.db.pragma(`max_page_count = ${pages + 1}`);
      try {
        await client.enqueueMany(
          echoJob,
          Array.from({ length: 200 }, () => ({ payload: { text: 'x'.repeat(4000) } })),
        );
        expectations.push({ invariant: 'one-terminal-state', jobIds: [], detail: 'an enqueue into a full database succeeded' });
      } catch (error) {
        if (!/full/.test((error as Error).message)) {
          expectations.push({
            invariant: 'one-terminal-state',
            jobIds: [],
            detail: `a full database failed unclearly: ${(error as Error).message}`,
          });
        }
      }
      const survivor = await fullStore.getJob(before.id);
      const counts = await fullStore.countByState();
      if (survivor?.state !== 'available' || counts.available !== 1) {
        expectations.push({
          invariant: 'one-terminal-state',
          jobIds: [before.id],
          detail: 'a failed bulk enqueue into a full database changed other jobs',
        });
      }
      await fullStore.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
    return { case: this.name, store: kind, jobs: 1, faults: 3, violations: expectations, durationMs: Date.now() - startedAt };
  },
};

/**
 * Makes `paths` read-only for this process and returns a function that undoes
 * it. For root, whom file modes do not stop, that takes the immutable
 * attribute, which root must also respect. chattr fails on file systems
 * without it (tmpfs), and the case then reports that error instead of passing.
 */
function makeReadOnly(paths: string[]): () => void {
  if (process.getuid?.() !== 0) {
    for (const path of paths) chmodSync(path, 0o555);
    return () => {
      for (const path of paths) chmodSync(path, 0o755);
    };
  }
  execFileSync('chattr', ['+i', ...paths]);
  return () => execFileSync('chattr', ['-i', ...paths]);
}

async function expectOpenError(path: string, message: RegExp, label: string, expectations: Violation[]): Promise<void> {
  try {
    const store = await openStore(path);
    await store.close();
    expectations.push({ invariant: 'one-terminal-state', jobIds: [], detail: `a ${label} store file opened without an error` });
  } catch (error) {
    if (!message.test((error as Error).message)) {
      expectations.push({
        invariant: 'one-terminal-state',
        jobIds: [],
        detail: `a ${label} store file failed unclearly: ${(error as Error).message}`,
      });
    }
  }
}

export const HOSTILE_CASES: readonly HostileCase[] = [payloadCase, namesCase, handlerCase, brokenFileCase];
