/**
 * Named points inside an attempt where a test can stop, stall or kill the
 * process. They are switched on by the VOUCH_FAILPOINTS environment variable,
 * read once at start-up; when it is unset, `failpoint` is a no-op function.
 *
 * Format: comma-separated `point=action[@hit]`, for example
 * `after-effect-before-ledger=kill@3` kills the process the third time that
 * point is reached. Without `@hit` the action fires every time.
 *
 * Actions:
 * - `kill`: SIGKILL this process, as an out-of-memory kill or a power cut would.
 * - `throw`: throw an Error from the point.
 * - `block:MS`: block the event loop for MS milliseconds, so no timer or heartbeat runs.
 * - `sleep:MS`: wait MS milliseconds without blocking the event loop.
 *
 * Points (each documented where it is called):
 * - `after-lease`: the worker holds leases, before any attempt starts.
 * - `before-effect`: an effect's intent is recorded, before the effect runs.
 * - `after-effect-before-ledger`: the effect ran, before its done record is written.
 * - `after-ledger-before-commit`: perform and verify finished, before the commit transaction.
 * - `inside-commit`: inside the commit transaction, after the ctx.transaction writes, before the job row changes.
 * - `heartbeat`: before each heartbeat round; `block` or `sleep` here stalls lease renewal.
 */
export type FailpointName =
  | 'after-lease'
  | 'before-effect'
  | 'after-effect-before-ledger'
  | 'after-ledger-before-commit'
  | 'inside-commit'
  | 'heartbeat';

const POINTS: readonly FailpointName[] = [
  'after-lease',
  'before-effect',
  'after-effect-before-ledger',
  'after-ledger-before-commit',
  'inside-commit',
  'heartbeat',
];

interface Rule {
  action: 'kill' | 'throw' | 'block' | 'sleep';
  ms: number;
  hit: number | null;
  seen: number;
}

/** Parses a VOUCH_FAILPOINTS value; throws on any unknown point or action so a typo cannot disable a test's fault. */
export function parseFailpoints(spec: string): Map<FailpointName, Rule> {
  const rules = new Map<FailpointName, Rule>();
  for (const entry of spec
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)) {
    const match = /^([a-z-]+)=(kill|throw|block|sleep)(?::(\d+))?(?:@(\d+))?$/.exec(entry);
    if (!match || !POINTS.includes(match[1] as FailpointName)) {
      throw new Error(
        `invalid VOUCH_FAILPOINTS entry "${entry}": expected point=action[:ms][@hit] with point one of ${POINTS.join(', ')} and action kill, throw, block:MS or sleep:MS`,
      );
    }
    const action = match[2] as Rule['action'];
    if ((action === 'block' || action === 'sleep') && match[3] === undefined) {
      throw new Error(`invalid VOUCH_FAILPOINTS entry "${entry}": ${action} needs a duration, such as ${action}:5000`);
    }
    rules.set(match[1] as FailpointName, { action, ms: Number(match[3] ?? 0), hit: match[4] ? Number(match[4]) : null, seen: 0 });
  }
  return rules;
}

const rules = process.env.VOUCH_FAILPOINTS ? parseFailpoints(process.env.VOUCH_FAILPOINTS) : null;

function trigger(name: FailpointName): void | Promise<void> {
  const rule = rules?.get(name);
  if (!rule) return;
  rule.seen += 1;
  if (rule.hit !== null && rule.seen !== rule.hit) return;
  switch (rule.action) {
    case 'kill':
      process.kill(process.pid, 'SIGKILL');
      return;
    case 'throw':
      throw new Error(`failpoint ${name} fired`);
    case 'block': {
      const until = Date.now() + rule.ms;
      while (Date.now() < until) {
        // Spin on purpose: the point of this action is that nothing else in the process runs.
      }
      return;
    }
    case 'sleep':
      return new Promise((resolve) => setTimeout(resolve, rule.ms));
  }
}

function noop(_name: FailpointName): void {}

/** Fires the named failpoint if VOUCH_FAILPOINTS configures it. May return a promise (sleep). */
export const failpoint: (name: FailpointName) => void | Promise<void> = rules ? trigger : noop;
