/** Why a wait ended: a notify() call, or the timeout. */
export type WakeReason = 'notified' | 'timeout';

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

  /** Resolves on the next notification, or after timeoutMs. */
  wait(timeoutMs: number): Promise<WakeReason> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve('notified');
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      const notified = () => finish('notified');
      const finish = (reason: WakeReason) => {
        clearTimeout(timer);
        if (this.resolve === notified) this.resolve = undefined;
        this.pending = false;
        resolve(reason);
      };
      this.resolve = notified;
    });
  }
}
