/**
 * A level-triggered wake-up for one queue loop: notify() before wait() is not
 * lost, so an enqueue that lands while the loop is leasing still wakes it.
 */
export class WakeSignal {
  private pending = false;
  private resolve: (() => void) | undefined;

  notify(): void {
    this.pending = true;
    this.resolve?.();
  }

  /** Clears a pending notification; call before looking for work. */
  clear(): void {
    this.pending = false;
  }

  /** Resolves on the next notification, or after timeoutMs. */
  wait(timeoutMs: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      const self = this;
      function finish() {
        clearTimeout(timer);
        if (self.resolve === finish) self.resolve = undefined;
        self.pending = false;
        resolve();
      }
      this.resolve = finish;
    });
  }
}
