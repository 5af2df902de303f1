import { ConfigurationError } from '../core/errors.js';
import { rejectUnknownOptions, shown } from '../core/option-errors.js';
import type { AuditFindings, Store } from '../core/store.js';

export interface AuditThresholds {
  /** A due job waiting longer than this is overdue, in milliseconds. @defaultValue 60_000 */
  overdueAfterMs?: number;
  /** An effect intent older than this, on a job that is not running, is in doubt, in milliseconds. @defaultValue 60_000 */
  inDoubtAfterMs?: number;
  /** How far back recovered attempts and dead jobs are counted, in milliseconds. @defaultValue 86_400_000 (24 hours) */
  windowMs?: number;
  /** Overdue jobs tolerated before the audit fails. @defaultValue 0 */
  maxOverdue?: number;
  /** In-doubt effects tolerated before the audit fails. @defaultValue 0 */
  maxInDoubt?: number;
  /** Dead jobs within the window tolerated before the audit fails. @defaultValue 0 */
  maxDead?: number;
  /** Recovered attempts within the window tolerated before the audit fails. @defaultValue no limit */
  maxRecovered?: number;
  /** Most rows listed per category. The counts and thresholds do not depend on it. @defaultValue 100 */
  limit?: number;
}

type Category = keyof AuditFindings;

export interface AuditReport {
  /** The rows of each category, at most `limit` of them. */
  findings: AuditFindings;
  /**
   * How many rows each category has. A category with `more` set has more
   * than `count`: the audit reads only enough rows to compare with the
   * largest threshold and to list `limit` of them.
   */
  totals: Record<Category, { count: number; more: boolean }>;
  /** Categories over their threshold, such as "dead: 3 > 0". Empty when the audit passes. */
  breaches: string[];
  passed: boolean;
}

/** Runs the audit queries and compares each category with its threshold. */
export async function runAudit(store: Store<any>, thresholds: AuditThresholds = {}): Promise<AuditReport> {
  // A threshold of NaN would make every comparison false, so a broken setting would pass every audit.
  rejectUnknownOptions('runAudit', thresholds, [
    'overdueAfterMs',
    'inDoubtAfterMs',
    'windowMs',
    'maxOverdue',
    'maxInDoubt',
    'maxDead',
    'maxRecovered',
    'limit',
  ]);
  for (const option of ['maxOverdue', 'maxInDoubt', 'maxDead', 'maxRecovered', 'limit'] as const) {
    const value = thresholds[option];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
      throw new ConfigurationError(`audit option ${option} must be a whole number of 0 or more; got ${shown(value)}.`);
    }
  }
  for (const option of ['overdueAfterMs', 'inDoubtAfterMs', 'windowMs'] as const) {
    const value = thresholds[option];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      throw new ConfigurationError(`audit option ${option} must be a number of milliseconds, 0 or more; got ${shown(value)}.`);
    }
  }
  const listed = thresholds.limit ?? 100;
  const limits: [Category, number][] = [
    ['overdue', thresholds.maxOverdue ?? 0],
    ['inDoubt', thresholds.maxInDoubt ?? 0],
    ['dead', thresholds.maxDead ?? 0],
    ['recovered', thresholds.maxRecovered ?? Number.POSITIVE_INFINITY],
  ];
  // Enough rows that a category over its threshold shows it, and one more to tell "exactly" from "more than".
  const finite = limits.map(([, limit]) => limit).filter(Number.isFinite);
  const counted = Math.max(listed, ...finite.map((limit) => limit + 1));
  const found = await store.audit({
    overdueAfterMs: thresholds.overdueAfterMs ?? 60_000,
    inDoubtAfterMs: thresholds.inDoubtAfterMs ?? 60_000,
    windowMs: thresholds.windowMs ?? 86_400_000,
    limit: counted + 1,
  });

  const totals = {} as AuditReport['totals'];
  // In the order of the findings, so that JSON output lists both alike.
  for (const category of ['overdue', 'inDoubt', 'recovered', 'dead'] as const) {
    const rows = found[category].length;
    totals[category] = { count: Math.min(rows, counted), more: rows > counted };
  }
  const breaches = limits
    .filter(([category, limit]) => found[category].length > limit)
    .map(([category, limit]) => `${category}: ${describeTotal(totals[category])} > ${limit}`);
  const findings: AuditFindings = {
    overdue: found.overdue.slice(0, listed),
    inDoubt: found.inDoubt.slice(0, listed),
    recovered: found.recovered.slice(0, listed),
    dead: found.dead.slice(0, listed),
  };
  return { findings, totals, breaches, passed: breaches.length === 0 };
}

function describeTotal(total: { count: number; more: boolean }): string {
  return total.more ? `over ${total.count}` : String(total.count);
}

/** Returns the heading count of a category, saying when only some of its rows are listed. */
function heading(report: AuditReport, category: Category): string {
  const total = report.totals[category];
  const listed = report.findings[category].length;
  const count = describeTotal(total);
  return listed < total.count || total.more ? `${count} (${listed} listed)` : count;
}

/** Formats a report as text for a terminal. */
export function formatAudit(report: AuditReport): string {
  const { overdue, inDoubt, recovered, dead } = report.findings;
  const lines: string[] = [];
  lines.push(`overdue:   ${heading(report, 'overdue')}`);
  for (const row of overdue)
    lines.push(`  job ${row.jobId} ${row.name} (${row.queue}) ${row.state}, due ${Math.round(row.dueSinceMs / 1000)} s ago`);
  lines.push(`in doubt:  ${heading(report, 'inDoubt')}`);
  for (const row of inDoubt) {
    lines.push(
      `  job ${row.jobId} ${row.name} effect "${row.effect}" key ${row.idempotencyKey}, job ${row.jobState}, ${Math.round(row.sinceMs / 1000)} s`,
    );
  }
  lines.push(`recovered: ${heading(report, 'recovered')}`);
  for (const row of recovered) {
    const ending = row.outcome === 'lease_lost' ? 'lost its lease' : 'abandoned';
    lines.push(`  job ${row.jobId} ${row.name} attempt ${row.attempt} ${ending}, worker ${row.workerId}`);
  }
  lines.push(`dead:      ${heading(report, 'dead')}`);
  for (const row of dead)
    lines.push(
      `  job ${row.jobId} ${row.name} after ${row.attempt} attempt${row.attempt === 1 ? '' : 's'}: ${row.lastError ?? '(no error recorded)'}`,
    );
  lines.push(report.passed ? 'audit passed' : `audit FAILED: ${report.breaches.join(', ')}`);
  return lines.join('\n');
}
