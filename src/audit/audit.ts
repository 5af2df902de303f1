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
  /** Most rows listed per category. @defaultValue 100 */
  limit?: number;
}

export interface AuditReport {
  findings: AuditFindings;
  /** Categories over their threshold, such as "dead: 3 > 0". Empty when the audit passes. */
  breaches: string[];
  passed: boolean;
}

/** Runs the audit queries and compares each category with its threshold. */
export async function runAudit(store: Store<any>, thresholds: AuditThresholds = {}): Promise<AuditReport> {
  const findings = await store.audit({
    overdueAfterMs: thresholds.overdueAfterMs ?? 60_000,
    inDoubtAfterMs: thresholds.inDoubtAfterMs ?? 60_000,
    windowMs: thresholds.windowMs ?? 86_400_000,
    limit: thresholds.limit ?? 100,
  });
  const limits: [keyof AuditFindings, number][] = [
    ['overdue', thresholds.maxOverdue ?? 0],
    ['inDoubt', thresholds.maxInDoubt ?? 0],
    ['dead', thresholds.maxDead ?? 0],
    ['recovered', thresholds.maxRecovered ?? Number.POSITIVE_INFINITY],
  ];
  const breaches = limits
    .filter(([category, limit]) => findings[category].length > limit)
    .map(([category, limit]) => `${category}: ${findings[category].length} > ${limit}`);
  return { findings, breaches, passed: breaches.length === 0 };
}

/** Formats a report as text for a terminal. */
export function formatAudit(report: AuditReport): string {
  const { overdue, inDoubt, recovered, dead } = report.findings;
  const lines: string[] = [];
  lines.push(`overdue:   ${overdue.length}`);
  for (const row of overdue)
    lines.push(`  job ${row.jobId} ${row.name} (${row.queue}) ${row.state}, due ${Math.round(row.dueSinceMs / 1000)} s ago`);
  lines.push(`in doubt:  ${inDoubt.length}`);
  for (const row of inDoubt) {
    lines.push(
      `  job ${row.jobId} ${row.name} effect "${row.effect}" key ${row.idempotencyKey}, job ${row.jobState}, ${Math.round(row.sinceMs / 1000)} s`,
    );
  }
  lines.push(`recovered: ${recovered.length}`);
  for (const row of recovered) {
    const ending = row.outcome === 'lease_lost' ? 'lost its lease' : 'abandoned';
    lines.push(`  job ${row.jobId} ${row.name} attempt ${row.attempt} ${ending}, worker ${row.workerId}`);
  }
  lines.push(`dead:      ${dead.length}`);
  for (const row of dead)
    lines.push(
      `  job ${row.jobId} ${row.name} after ${row.attempt} attempt${row.attempt === 1 ? '' : 's'}: ${row.lastError ?? '(no error recorded)'}`,
    );
  lines.push(report.passed ? 'audit passed' : `audit FAILED: ${report.breaches.join(', ')}`);
  return lines.join('\n');
}
