import pg from 'pg';
import type { Logger } from 'pino';
import { errorForLog } from '../../core/log-error.js';
import { quoteIdent } from './sql.js';

/**
 * The LISTEN side of wake-ups: one dedicated connection per store that waits
 * for the NOTIFY an enqueue sends, so an idle worker starts a new job within
 * milliseconds instead of at its next poll. Polling stays the fallback: a
 * lost notification only delays a job until the next poll.
 *
 * When the connection is lost, it reconnects with exponential backoff and
 * jitter, and on success wakes every queue once, since notifications sent
 * during the outage were never delivered.
 */
export class Notifier {
  private client: pg.Client | null = null;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly channel: string,
    private readonly onNotify: (queue: string | null) => void,
    private readonly logger: Logger,
    private readonly backoff: { minMs: number; maxMs: number } = { minMs: 100, maxMs: 30_000 },
  ) {}

  start(): void {
    this.stopped = false;
    if (!this.client && !this.timer) void this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const client = this.client;
    this.client = null;
    if (client) await client.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    this.timer = undefined;
    const client = new pg.Client({ ...this.config, keepAlive: true });
    this.client = client;
    client.on('notification', (message) => {
      if (message.channel === this.channel) this.onNotify(message.payload || null);
    });
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, new Error('the listening connection ended')));
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(this.channel)}`);
    } catch (error) {
      this.lost(client, error as Error);
      return;
    }
    if (this.client !== client) return;
    if (this.failures > 0) {
      this.logger.info({ channel: this.channel, failures: this.failures }, 'listening for wake-ups again');
      this.failures = 0;
      // Whatever was enqueued while nobody listened has sent its notification already.
      this.onNotify(null);
    }
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.client !== client) return;
    this.client = null;
    client.end().catch(() => {});
    if (this.stopped) return;
    this.failures += 1;
    const ceiling = Math.min(this.backoff.minMs * 2 ** Math.min(this.failures - 1, 20), this.backoff.maxMs);
    const delayMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.logger.warn(
      { error: errorForLog(error), channel: this.channel, failures: this.failures, retryInMs: delayMs },
      'lost the connection that listens for wake-ups; polling until it is back',
    );
    this.timer = setTimeout(() => void this.connect(), delayMs);
    this.timer.unref();
  }
}
