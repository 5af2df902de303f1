/**
 * Waiting for a quiet machine before a measurement starts.
 *
 * The systems share the machine, and one system's background work can
 * outlive its measurement: PostgreSQL may write back and vacuum after a
 * drain, Redis may save a snapshot. Started into that, the next system's
 * rate would measure the previous one as much as itself. So each worker
 * process starts only once the machine's CPU has been mostly idle for one
 * sample.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** A sample's busy share of all cores below which the machine counts as quiet. */
const QUIET_SHARE = 0.1;
const SAMPLE_MS = 100;

/** Busy and total jiffies of all cores, from the first line of /proc/stat. */
function cpuTimes(): { busy: number; total: number } {
  // cpu  user nice system idle iowait irq softirq steal ...
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * Waits until one sample of SAMPLE_MS shows under QUIET_SHARE of the CPU
 * busy, or until `capMs` passed, and returns how long it waited. Where
 * /proc/stat cannot be read, it returns at once.
 */
export async function waitForQuiet(capMs: number): Promise<{ waitedMs: number; quiet: boolean }> {
  const startedAt = performance.now();
  let before: { busy: number; total: number };
  try {
    before = cpuTimes();
  } catch {
    return { waitedMs: 0, quiet: false };
  }
  while (performance.now() - startedAt < capMs) {
    await sleep(SAMPLE_MS);
    const after = cpuTimes();
    const total = after.total - before.total;
    const busyShare = total > 0 ? (after.busy - before.busy) / total : 0;
    before = after;
    if (busyShare < QUIET_SHARE) return { waitedMs: performance.now() - startedAt, quiet: true };
  }
  return { waitedMs: performance.now() - startedAt, quiet: false };
}
