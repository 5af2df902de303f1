/**
 * The demo's figures, computed after each run from ground truth only: the
 * job store's own tables and the messages the SMTP sink accepted. Nothing
 * here trusts a counter kept by a worker.
 */
import type { Store } from '../../src/index.js';
import type { NaiveQueue } from './naive-queue.js';
import { JOB_HEADER } from './settings.js';
import type { SmtpSink } from './smtp-sink.js';
import type { NotificationRow } from './store.js';

/** One column of the table, and one half of the --json output. Keep the keys in this order. */
export interface RunFigures {
  jobs: number;
  completed: number;
  failed: number;
  /** Jobs with at least one email at the sink. */
  delivered: number;
  /** Completed jobs with no email at the sink. */
  lost: number;
  /** Jobs with more than one email at the sink. */
  duplicates: number;
  /** Attempts whose worker died or lost its lease, and whose job was recovered. */
  abandoned: number;
  /** In-doubt effects that an effect's verify found done, so they were not run again. */
  inDoubtResolved: number;
  kills: number;
  durationMs: number;
}

/** Figures that are not columns of the table but decide whether the run kept its promises. */
export interface RunChecks {
  /** Jobs neither completed, failed nor cancelled when the run ended. */
  notTerminal: number;
  /** In-doubt effects settled by running them again with the same key. */
  inDoubtRerun: number;
  /** Problems with the notifications table: a missing row for a completed job, a row for a job that is not completed. */
  notificationProblems: string[];
}

export interface EnqueuedNotification {
  id: string;
  n: number;
}

/** Counts the sink's messages per job, by the job header every demo email carries (`vouch:7`, `naive:7`). */
export function emailsPerJob(sink: SmtpSink): Map<string, number> {
  const counts = new Map<string, number>();
  const header = JOB_HEADER.toLowerCase();
  for (const message of sink.messages()) {
    const job = message.headers.get(header);
    if (job !== undefined) counts.set(job, (counts.get(job) ?? 0) + 1);
  }
  return counts;
}

export async function vouchFigures(
  store: Store<any>,
  jobs: readonly EnqueuedNotification[],
  emails: ReadonlyMap<string, number>,
  notifications: readonly NotificationRow[],
  run: { kills: number; durationMs: number },
): Promise<{ figures: RunFigures; checks: RunChecks }> {
  const figures = emptyFigures(jobs.length, run);
  const checks: RunChecks = { notTerminal: 0, inDoubtRerun: 0, notificationProblems: [] };
  const rowsPerJob = new Map<string, number>();
  for (const row of notifications) rowsPerJob.set(row.jobId, (rowsPerJob.get(row.jobId) ?? 0) + 1);

  for (const { id, n } of jobs) {
    const [job, attempts, effects] = await Promise.all([store.getJob(id), store.listAttempts(id), store.listEffects(id)]);
    const state = job?.state ?? 'missing';
    if (state === 'completed') figures.completed += 1;
    else if (state === 'failed') figures.failed += 1;
    else if (state !== 'cancelled') checks.notTerminal += 1;
    figures.abandoned += attempts.filter((attempt) => attempt.outcome === 'abandoned' || attempt.outcome === 'lease_lost').length;
    figures.inDoubtResolved += effects.filter((effect) => effect.resolution === 'verified').length;
    checks.inDoubtRerun += effects.filter((effect) => effect.resolution === 'rerun').length;
    countEmails(figures, state === 'completed', emails.get(`vouch:${n}`) ?? 0);

    const rows = rowsPerJob.get(id) ?? 0;
    if (state === 'completed' && rows !== 1) checks.notificationProblems.push(`job ${id} is completed and has ${rows} notifications rows`);
    if (state !== 'completed' && rows !== 0) checks.notificationProblems.push(`job ${id} is ${state} and has ${rows} notifications rows`);
  }
  return { figures, checks };
}

export function naiveFigures(
  queue: NaiveQueue,
  emails: ReadonlyMap<string, number>,
  run: { kills: number; durationMs: number },
): { figures: RunFigures; checks: RunChecks } {
  const jobs = queue.jobs();
  const figures = emptyFigures(jobs.length, run);
  const checks: RunChecks = { notTerminal: 0, inDoubtRerun: 0, notificationProblems: [] };
  for (const job of jobs) {
    // The naive queue has one finished state, done; it has no way to fail a job.
    if (job.state === 'done') figures.completed += 1;
    else checks.notTerminal += 1;
    countEmails(figures, job.state === 'done', emails.get(`naive:${job.n}`) ?? 0);
  }
  return { figures, checks };
}

function countEmails(figures: RunFigures, completed: boolean, emails: number): void {
  if (emails > 0) figures.delivered += 1;
  if (emails > 1) figures.duplicates += 1;
  if (completed && emails === 0) figures.lost += 1;
}

function emptyFigures(jobs: number, run: { kills: number; durationMs: number }): RunFigures {
  return {
    jobs,
    completed: 0,
    failed: 0,
    delivered: 0,
    lost: 0,
    duplicates: 0,
    abandoned: 0,
    inDoubtResolved: 0,
    kills: run.kills,
    durationMs: Math.round(run.durationMs),
  };
}
