import { isConnectionError } from './connection.js';

/**
 * Group writes: many callers' fenced writes of one kind, sent as one
 * statement in one round trip.
 *
 * A call joins the group that is forming. The group is written at the end
 * of the current event-loop turn, or once it reaches `flushAt` items, or, while
 * an earlier group of this kind is still in flight, as soon as that one
 * settles. So at most `maxInFlight` statements of a kind use a connection at
 * once, and under load the groups grow instead of the connections
 * multiplying. The early write by size serves bursts spread over several
 * callbacks of one turn, such as many timers expiring together. The first
 * items then reach the database while the burst goes on. Otherwise all of
 * them wait for its end, and a crash in that time leaves them all to run
 * again.
 *
 * Every caller gets its own outcome. A group statement changes all its rows
 * or none, so one that fails with an SQL error (not a lost connection) wrote
 * nothing. Each item is then written again alone, so one bad item or a
 * deadlock with another session cannot fail its neighbours.
 */
export interface GroupItem {
  /**
   * Two items with the same key never share a group; the later waits for the
   * next one. The key names the row the item writes, since one statement
   * cannot update a row twice.
   */
  readonly key: string;
  /** The store's test clock when the call was made: one group runs under one clock value. */
  readonly now: number | null;
}

/** One caller's own outcome within a group. */
export type Settled<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface GroupWriterOptions<I extends GroupItem, R> {
  /**
   * Writes one group and returns one outcome per item, in order. Throwing
   * settles every item of the group with that error.
   */
  write(items: readonly I[], now: number | null): Promise<Settled<R>[]>;
  /** The order of the items within a group: the order the statement locks their rows in. */
  order(a: I, b: I): number;
  /** Maximum items in one statement. */
  maxGroup: number;
  /** Maximum statements of this kind in flight at once. */
  maxInFlight: number;
  /** Items after which a forming group is written at once rather than at the end of the turn. */
  flushAt: number;
}

interface Waiting<I, R> {
  item: I;
  resolve(value: R): void;
  reject(error: unknown): void;
}

export class GroupWriter<I extends GroupItem, R> {
  private waiting: Waiting<I, R>[] = [];
  private inFlight = 0;
  private scheduled = false;
  private drained: (() => void)[] = [];

  constructor(private readonly options: GroupWriterOptions<I, R>) {}

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (this.waiting.length >= this.options.flushAt && this.inFlight < this.options.maxInFlight) this.flush();
      else this.schedule();
    });
  }

  /** Resolves once every submitted item has been written and settled. */
  drain(): Promise<void> {
    if (this.waiting.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /**
   * Flushes on the next turn rather than now, so that every call made in
   * this turn (the callers of one lease batch, or those woken by the group
   * that just settled) joins the same group.
   */
  private schedule(): void {
    if (this.scheduled || this.waiting.length === 0 || this.inFlight >= this.options.maxInFlight) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.waiting.length > 0 && this.inFlight < this.options.maxInFlight) {
      const group = this.take();
      this.inFlight += 1;
      void this.writeGroup(group).finally(() => {
        this.inFlight -= 1;
        this.schedule();
        if (this.waiting.length === 0 && this.inFlight === 0) {
          for (const resolve of this.drained.splice(0)) resolve();
        }
      });
    }
  }

  /** Takes the next group off the queue, in arrival order, leaving the items that cannot join it. */
  private take(): Waiting<I, R>[] {
    const first = this.waiting[0] as Waiting<I, R>;
    const group: Waiting<I, R>[] = [];
    const keys = new Set<string>();
    const rest: Waiting<I, R>[] = [];
    for (const entry of this.waiting) {
      const joins = group.length < this.options.maxGroup && entry.item.now === first.item.now && !keys.has(entry.item.key);
      if (joins) {
        group.push(entry);
        keys.add(entry.item.key);
      } else {
        rest.push(entry);
      }
    }
    this.waiting = rest;
    return group.sort((a, b) => this.options.order(a.item, b.item));
  }

  private async writeGroup(group: readonly Waiting<I, R>[]): Promise<void> {
    const now = (group[0] as Waiting<I, R>).item.now;
    let outcomes: Settled<R>[];
    try {
      outcomes = await this.options.write(
        group.map((entry) => entry.item),
        now,
      );
    } catch (error) {
      if (group.length === 1 || !rolledBackWhole(error)) {
        for (const entry of group) entry.reject(error);
        return;
      }
      outcomes = await Promise.all(group.map((entry) => this.writeAlone(entry.item, now)));
    }
    group.forEach((entry, index) => {
      const outcome = outcomes[index];
      if (outcome === undefined) entry.reject(new Error('a group write returned fewer outcomes than it had items'));
      else if (outcome.ok) entry.resolve(outcome.value);
      else entry.reject(outcome.error);
    });
  }

  private async writeAlone(item: I, now: number | null): Promise<Settled<R>> {
    try {
      const [outcome] = await this.options.write([item], now);
      return outcome ?? { ok: false, error: new Error('a group write returned no outcome') };
    } catch (error) {
      return { ok: false, error };
    }
  }
}

/**
 * True for an error the server raised for the statement (it carries an
 * SQLSTATE and the connection is fine): the statement then rolled back as a
 * whole. After a lost connection what landed is unknown, so it is not one.
 */
function rolledBackWhole(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !isConnectionError(error);
}
