import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * The logger used when the application passes none: JSON lines on stderr at
 * the level in VOUCH_LOG_LEVEL (default `info`).
 */
export function createDefaultLogger(): Logger {
  return pino({ name: 'vouch', level: process.env.VOUCH_LOG_LEVEL ?? 'info' }, pino.destination(2));
}
