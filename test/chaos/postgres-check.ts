import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { POSTGRES_URL } from './environment.js';

/** Returns null when the chaos cases can run on PostgreSQL, or the reason they cannot. */
export async function postgresAvailable(): Promise<string | null> {
  const storeFile = fileURLToPath(new URL('../../src/stores/postgres/postgres-store.ts', import.meta.url));
  if (!existsSync(storeFile)) return 'the PostgreSQL store is not built yet';
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (error) {
    return `no PostgreSQL answers at ${POSTGRES_URL} (${(error as Error).message}); start one or set VOUCH_TEST_POSTGRES_URL`;
  } finally {
    await client.end().catch(() => {});
  }
}
