/**
 * The cost of one ctx.effect on SQLite. The benchmark's effect workload
 * (5,000 jobs at concurrency 10) runs in this process with a plain job and
 * with one effect. The profile reports the WAL each job appends and the
 * flushes that the effects' intents wait for.
 *
 * The flushes are counted by wrapping fs.fdatasync, which the store's
 * WalSync calls for every flush. A store option to observe them would be
 * public API for a profile's sake.
 */
import fs, { mkdtempSync, rmSync, statSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../dist/sqlite.js';
import { median } from '../workloads/results.js';
import { type Drain, drain, enqueueJobs, profileJob } from './drain.js';

const JOBS = 5000;
const CONCURRENCY = 10;
const REPETITIONS = 3;
/** Jobs of the drain that measures WAL bytes: few enough that no automatic checkpoint restarts the WAL. */
const WAL_JOBS = 300;

/** The flushes since the last reset: how many, and how long each took in microseconds. */
const flushes: number[] = [];

/**
 * Makes every fs.fdatasync record its duration in `flushes`. The store's
 * WalSync reads its `fdatasync` import when it is constructed, and
 * syncBuiltinESMExports makes that import name the wrapper.
 */
function observeFlushes(): void {
  const original = fs.fdatasync;
  const observed = (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
    const startedAt = performance.now();
    original(fd, (error) => {
      flushes.push((performance.now() - startedAt) * 1000);
      callback(error);
    });
  };
  fs.fdatasync = observed as typeof fs.fdatasync;
  syncBuiltinESMExports();
}

/** Drains WAL_JOBS jobs from an emptied WAL and returns the bytes appended per job. */
async function walBytesPerJob(dir: string, withEffect: boolean): Promise<number> {
  const path = join(dir, `wal-${withEffect ? 'effect' : 'plain'}.db`);
  const store = new SqliteStore({ path });
  try {
    await enqueueJobs(store, profileJob(withEffect), WAL_JOBS);
    // A second connection empties the WAL, so that its size afterwards is what the drain appended.
    const reader = new Database(path);
    reader.pragma('wal_checkpoint(TRUNCATE)');
    reader.close();
    await drain(store, profileJob(withEffect), WAL_JOBS, CONCURRENCY);
    return statSync(`${path}-wal`).size / WAL_JOBS;
  } finally {
    await store.close();
  }
}

interface EffectDrain extends Drain {
  flushCount: number;
  flushMedian: number;
  /** Share of the drain's time in which a flush was running. */
  flushShare: number;
}

async function measureDrain(dir: string, withEffect: boolean, repetition: number): Promise<EffectDrain> {
  const store = new SqliteStore({ path: join(dir, `drain-${withEffect ? 'effect' : 'plain'}-${repetition}.db`) });
  try {
    await enqueueJobs(store, profileJob(withEffect), JOBS);
    flushes.length = 0;
    const measured = await drain(store, profileJob(withEffect), JOBS, CONCURRENCY);
    // One flush runs at a time (WalSync), so their durations add up to the time some flush was running.
    const flushMicros = flushes.reduce((sum, micros) => sum + micros, 0);
    return {
      ...measured,
      flushCount: flushes.length,
      flushMedian: flushes.length > 0 ? median(flushes) : 0,
      flushShare: flushMicros / 1000 / measured.milliseconds,
    };
  } finally {
    await store.close();
  }
}

export async function profileSqliteEffect(): Promise<void> {
  observeFlushes();
  const dir = mkdtempSync(join(tmpdir(), 'vouch-profile-'));
  try {
    console.log(
      `SQLite drain of ${JOBS.toLocaleString('en-US')} jobs at concurrency ${CONCURRENCY} in this process (Node ${process.versions.node}), files in ${tmpdir()}, median of ${REPETITIONS}:`,
    );
    for (const withEffect of [false, true]) {
      const runs: EffectDrain[] = [];
      for (let repetition = 0; repetition < REPETITIONS; repetition += 1) runs.push(await measureDrain(dir, withEffect, repetition));
      const rate = median(runs.map((run) => run.rate));
      const perTen = (CONCURRENCY / rate) * 1e6;
      const walBytes = await walBytesPerJob(dir, withEffect);
      const flushCount = median(runs.map((run) => run.flushCount));
      const flushText =
        flushCount === 0
          ? 'no flush'
          : `${flushCount} flushes (${(JOBS / flushCount).toFixed(0)} jobs each), median ${median(runs.map((run) => run.flushMedian)).toFixed(0)} µs, running ${(100 * median(runs.map((run) => run.flushShare))).toFixed(0)}% of the drain`;
      console.log(
        `  ${(withEffect ? 'one ctx.effect' : 'plain job').padEnd(15)}${Math.round(rate).toLocaleString('en-US').padStart(7)} jobs/s (${perTen.toFixed(0)} µs per ${CONCURRENCY} jobs); WAL ${walBytes.toFixed(0)} bytes per job; ${flushText}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
