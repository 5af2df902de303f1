/**
 * The abort side of one attempt: the worker aborts it when the lease is lost
 * or shutdown runs out of grace, a timeout aborts it when the job's time is
 * up. The AbortSignal that a handler reads as ctx.signal is made on first
 * read, because most handlers never read it and an AbortController with its
 * listener cost about a tenth of a no-op attempt.
 */
export class AttemptAbort {
  private controller: AbortController | undefined;
  private abortReason: Error | undefined;
  private listener: ((reason: Error) => void) | undefined;

  get aborted(): boolean {
    return this.abortReason !== undefined;
  }

  /** The reason the attempt was aborted, or undefined while it was not. */
  get reason(): Error | undefined {
    return this.abortReason;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** Aborts the attempt. Later calls keep the first reason. */
  abort(reason: Error): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
    this.listener?.(reason);
  }

  /** Throws the abort reason if the attempt was aborted. */
  throwIfAborted(): void {
    if (this.abortReason) throw this.abortReason;
  }

  /**
   * Settles with `work`, or rejects with the abort reason as soon as the
   * attempt is aborted, whichever comes first. `work` keeps running after an
   * abort, and a handler stops early only if it reads ctx.signal.
   */
  race<T>(work: T | PromiseLike<T>): Promise<T> {
    if (this.abortReason) return Promise.reject(this.abortReason);
    // The listener stays set after `work` settles, which is harmless: rejecting a settled promise does nothing.
    return new Promise<T>((resolve, reject) => {
      this.listener = reject;
      Promise.resolve(work).then(resolve, reject);
    });
  }
}
