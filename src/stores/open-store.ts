import type { Clock } from '../core/clock.js';
import { ConfigurationError } from '../core/errors.js';
import { rejectUnknownOptions } from '../core/option-errors.js';
import type { Store } from '../core/store.js';

export interface OpenStoreOptions {
  /** Apply migrations when the store opens. @defaultValue true */
  migrate?: boolean;
  /** The SQLite store's source of time; PostgreSQL always uses the database clock. */
  clock?: Clock;
}

/**
 * Opens the store a location string names: a `postgres://` or
 * `postgresql://` URL selects PostgreSQL (a `schema` query parameter selects
 * the schema), anything else is a SQLite file path. The PostgreSQL store is
 * loaded only when asked for, so SQLite users need no `pg` package.
 */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<Store<any>> {
  rejectUnknownOptions('openStore', options, ['migrate', 'clock']);
  if (typeof location !== 'string' || location.trim() === '') {
    throw new ConfigurationError('store location is empty; pass a SQLite file path or a postgres:// URL.');
  }
  if (/^postgres(ql)?:\/\//i.test(location)) {
    const url = new URL(location);
    const schema = url.searchParams.get('schema');
    if (schema !== null && schema.trim() === '') {
      throw new ConfigurationError(
        `store URL ${shownLocation(location)} has an empty schema parameter; name the schema (?schema=jobs) or leave the parameter out to use "vouch".`,
      );
    }
    url.searchParams.delete('schema');
    const { PostgresStore } = await import('./postgres/postgres-store.js');
    return new PostgresStore({ connectionString: url.toString(), migrate: options.migrate !== false, ...(schema ? { schema } : {}) });
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location)?.[1];
  if (scheme) {
    throw new ConfigurationError(
      `store location ${shownLocation(location)} is a ${scheme}:// URL; only postgres:// and postgresql:// URLs are supported, and a SQLite store is named by its file path.`,
    );
  }
  const { SqliteStore } = await import('./sqlite/sqlite-store.js');
  return new SqliteStore({ path: location, migrate: options.migrate !== false, ...(options.clock ? { clock: options.clock } : {}) });
}

/** Quotes a location for an error message, with a URL's password masked: messages end up in logs and cron mail. */
function shownLocation(location: string): string {
  if (!URL.canParse(location)) return JSON.stringify(location);
  const url = new URL(location);
  if (url.password !== '') url.password = '***';
  return JSON.stringify(url.toString());
}
