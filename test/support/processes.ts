import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';

/** One JSON line a fixture process printed on stdout. `at` is its Date.now() when it printed it. */
export interface FixtureMessage {
  type: string;
  at: number;
  [field: string]: unknown;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() in this process when the exit was seen. */
  at: number;
}

/**
 * A fixture run as a real child process: `node --import tsx FILE ...args`.
 * Its stdout is read as JSON lines; the tail of its stderr is kept for
 * failure messages.
 */
export class FixtureProcess {
  readonly messages: FixtureMessage[] = [];
  readonly exited: Promise<ProcessExit>;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiters = new Set<() => void>();
  private stderrTail = '';
  private exit: ProcessExit | undefined;

  constructor(
    readonly label: string,
    fixture: string,
    args: readonly string[],
    env: Record<string, string> = {},
  ) {
    this.child = spawn(process.execPath, ['--import', 'tsx', resolve(fixture), ...args], {
      env: { ...process.env, VOUCH_FAILPOINTS: '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      try {
        this.messages.push(JSON.parse(line) as FixtureMessage);
      } catch {
        this.messages.push({ type: 'text', at: Date.now(), text: line });
      }
      this.notify();
    });
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
    });
    this.exited = new Promise((resolveExit) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal, at: Date.now() };
        resolveExit(this.exit);
        this.notify();
      });
    });
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  /** Messages of one type, or worker events of one name when type is 'event'. */
  select(type: string, event?: string): FixtureMessage[] {
    return this.messages.filter((message) => message.type === type && (event === undefined || message.event === event));
  }

  /** Waits for the first message, past or future, that matches. */
  async waitFor(description: string, match: (message: FixtureMessage) => boolean, timeoutMs = 10_000): Promise<FixtureMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(match);
      if (found) return found;
      if (this.exit) throw new Error(`${this.label} exited (${describeExit(this.exit)}) before ${description}.${this.diagnostics()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${this.label}: ${description}.${this.diagnostics()}`);
      await new Promise<void>((wake) => {
        const timer = setTimeout(done, left);
        const waiters = this.waiters;
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          wake();
        }
        waiters.add(done);
      });
    }
  }

  /** Waits for the process to exit, and fails with the tail of its stderr if it still runs after timeoutMs. */
  async exitWithin(timeoutMs: number, description: string): Promise<ProcessExit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.label} still ran after ${timeoutMs} ms, although ${description}.${this.diagnostics()}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  ready(timeoutMs = 10_000): Promise<FixtureMessage> {
    return this.waitFor('its ready message', (message) => message.type === 'ready', timeoutMs);
  }

  /** Writes one line to its stdin. */
  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  kill(signal: NodeJS.Signals): void {
    if (this.alive) this.child.kill(signal);
  }

  /** The tail of its stderr, for failure messages. */
  diagnostics(): string {
    return this.stderrTail ? `\n--- ${this.label} stderr ---\n${this.stderrTail}` : '';
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** The processes a test started, so that none outlives it. */
export class ProcessGroup {
  private readonly processes: FixtureProcess[] = [];

  start(label: string, fixture: string, args: readonly string[], env: Record<string, string> = {}): FixtureProcess {
    const child = new FixtureProcess(label, fixture, args, env);
    this.processes.push(child);
    return child;
  }

  /** SIGKILLs every process still alive and waits for them to exit. */
  async killAll(): Promise<void> {
    const alive = this.processes.filter((child) => child.alive);
    for (const child of alive) child.kill('SIGKILL');
    await Promise.all(alive.map((child) => child.exited));
    this.processes.length = 0;
  }
}

export function describeExit(exit: ProcessExit): string {
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}
