import pg from 'pg';

const POSTGRES_URL = process.env.VOUCH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Runs once before the suite. When no PostgreSQL answers it prints one line
 * saying the PostgreSQL tests are skipped and how to enable them; the suites
 * then skip themselves (or fail, with VOUCH_REQUIRE_POSTGRES=1).
 */
export default async function checkPostgres(): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    const required = process.env.VOUCH_REQUIRE_POSTGRES === '1';
    console.warn(
      `${required ? 'PostgreSQL is required (VOUCH_REQUIRE_POSTGRES=1) but' : 'PostgreSQL tests skipped:'} no server answers at ${POSTGRES_URL} (${(error as Error).message}). ` +
        'To run them, start PostgreSQL with trust authentication for user postgres and a database named test, or point VOUCH_TEST_POSTGRES_URL at one.',
    );
  } finally {
    await client.end().catch(() => {});
  }
}
