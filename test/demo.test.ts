import { execFile } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FIGURE_KEYS = [
  'jobs',
  'completed',
  'failed',
  'delivered',
  'lost',
  'duplicates',
  'abandoned',
  'inDoubtResolved',
  'kills',
  'durationMs',
];

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the demo the way a user would, from the repository root. */
function runDemo(args: string[], timeoutMs: number): Promise<Finished> {
  return new Promise((done) => {
    execFile('npx', ['tsx', 'examples/crash-demo/demo.ts', ...args], { cwd: REPO, timeout: timeoutMs }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      done({ code, stdout, stderr });
    });
  });
}

describe('crash demo', () => {
  it('loses and duplicates nothing on vouch while its workers are SIGKILLed, and reports the naive run consistently', async () => {
    const jobs = 150;
    const run = await runDemo(['--json', '--jobs', String(jobs), '--workers', '2', '--seed', '7'], 55_000);
    expect(run.code, `demo failed:\n${run.stderr}\n${run.stdout}`).toBe(0);

    const result = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '');
    expect(Object.keys(result).sort()).toEqual(['naive', 'vouch']);
    const { naive, vouch } = result;
    expect(Object.keys(vouch)).toEqual(FIGURE_KEYS);
    expect(Object.keys(naive)).toEqual(FIGURE_KEYS);

    expect(vouch.jobs).toBe(jobs);
    expect(vouch.kills).toBeGreaterThan(0);
    expect(vouch.lost).toBe(0);
    expect(vouch.duplicates).toBe(0);
    expect(vouch.completed + vouch.failed).toBe(jobs);

    expect(naive.jobs).toBe(jobs);
    // The naive queue marks a job done when a worker takes it, so every job ends done, emailed or not.
    expect(naive.completed).toBe(jobs);
    expect(naive.failed).toBe(0);
    expect(naive.delivered + naive.lost).toBe(naive.completed);
    expect(naive.abandoned).toBe(0);
    expect(naive.inDoubtResolved).toBe(0);
  }, 60_000);

  it('rejects a bad flag value, naming the value and the fix', async () => {
    const run = await runDemo(['--jobs', 'lots'], 20_000);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('"lots"');
    expect(run.stderr).toContain('--jobs 1000');
  }, 30_000);
});
