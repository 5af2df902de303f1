import { closeSync, fdatasync, openSync } from 'node:fs';

/** Flushes a file's written data to disk; `fs.fdatasync` unless a test injects a failing one. */
export type SyncFile = (fd: number, done: (error: NodeJS.ErrnoException | null) => void) => void;

/**
 * Makes committed WAL frames durable on libuv's thread pool instead of on
 * the event loop.
 *
 * With `synchronous = FULL`, SQLite syncs the WAL inside every COMMIT. Since
 * better-sqlite3 runs COMMIT on the main thread, each sync stalls every job
 * in the process for the length of a disk flush: 0.33 ms measured on the
 * 2-core test machine, and far longer on a busy disk. A writer that commits with
 * `synchronous = NORMAL` instead leaves its frames in the page cache, and
 * this class flushes them with `fdatasync` on a descriptor of its own. On
 * Linux that flushes every dirty page of the file, whichever process wrote it.
 *
 * The contract: the promise of `durable()` resolves only after a flush that
 * began after the call has finished, so every frame committed before the call
 * is on disk. SQLite appends to the WAL, and restarts it only after a
 * checkpoint has synced it and the database file. Its recovery reads the
 * frames in order and stops at the first whose running checksum fails. So
 * what survives a power loss is a prefix of the commits, and a write that
 * depends on an earlier one does not survive without it.
 *
 * What changes is visibility: another connection can read a commit before it
 * is durable. No vouch promise rests on that. A caller that awaits its
 * write gets its promise resolved only once it is durable. Anything another
 * process writes durably after reading it lands later in the same WAL, so it
 * cannot outlive it.
 *
 * One flush runs at a time. Calls that arrive during a flush wait for the
 * next one, which then covers all of them: this is where commits from many
 * event-loop turns share one disk flush.
 */
export class WalSync {
  private fd: number | undefined;
  private flushing = false;
  /** Callers waiting for the next flush. */
  private waiting: Waiter[] = [];
  /** Set once a flush failed: what reached the disk is unknown from then on. */
  private failure: Error | undefined;
  private closed = false;
  /** close() waiting for the flush in progress. */
  private whenIdle: (() => void)[] = [];

  constructor(
    private readonly walPath: string,
    private readonly syncFile: SyncFile = fdatasync,
  ) {}

  /** The error of the flush that failed, after which no write may be trusted to reach the disk. */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Resolves once every frame committed before this call is on disk. */
  durable(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('the SQLite store was closed before this write reached the disk'));
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (!this.flushing) this.flush();
    });
  }

  /** Lets every waiting caller's flush finish, then closes the descriptor; later calls reject. */
  async close(): Promise<void> {
    if (this.flushing) await new Promise<void>((resolve) => this.whenIdle.push(resolve));
    this.closed = true;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private flush(): void {
    const batch = this.takeWaiting();
    let fd: number;
    try {
      // Opened on first use: the WAL file exists once the first transaction has committed into it.
      this.fd ??= openSync(this.walPath, 'r');
      fd = this.fd;
    } catch (error) {
      this.fail(batch, error as Error);
      return;
    }
    this.flushing = true;
    const finished = (error: Error | null) => {
      this.flushing = false;
      if (error) this.fail(batch, error);
      else this.settle(batch);
      // Callers that arrived during this flush need one of their own.
      if (this.waiting.length > 0) this.flush();
      else for (const resolve of this.whenIdle.splice(0)) resolve();
    };
    try {
      this.syncFile(fd, finished);
    } catch (error) {
      finished(error as Error);
    }
  }

  /**
   * Fails the batch, and every write after it. A failed flush may have dropped
   * the dirty pages it could not write, and a later flush can then report
   * success for data that never reached the disk, so the store must be reopened.
   */
  private fail(batch: Waiter[], cause: Error): void {
    this.failure ??= new Error(
      `syncing the SQLite WAL file ${JSON.stringify(this.walPath)} failed (${cause.message}); writes since the last successful sync may not be on disk, so this store accepts no more writes: close it, check the disk, and open it again`,
      { cause },
    );
    this.settle([...batch, ...this.takeWaiting()], this.failure);
  }

  private takeWaiting(): Waiter[] {
    const batch = this.waiting;
    this.waiting = [];
    return batch;
  }

  private settle(batch: readonly Waiter[], error?: Error): void {
    for (const waiter of batch) {
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }
}

interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}
