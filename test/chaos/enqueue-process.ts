/**
 * Enqueues chaos jobs numbered 1..count from its own process and prints the
 * outcomes as JSON, so a case can race several processes on the same keys.
 * Arguments: store location, count. It waits for "go" on stdin so that every
 * racer has its connection open before the first enqueue.
 */
import { once } from 'node:events';
import { Client, openStore } from '../../src/index.js';
import { chaosJob } from './chaos-job.js';
import { DEFAULT_SETTINGS } from './environment.js';

const [location, countText] = process.argv.slice(2);
const store = await openStore(location as string);
const client = new Client({ store });
const definition = chaosJob(DEFAULT_SETTINGS);
process.stdout.write('ready\n');
await once(process.stdin, 'data');

const outcomes = [];
for (let n = 1; n <= Number(countText); n += 1) {
  const job = await client.enqueue(definition, { n, mode: 'send', ms: 0 });
  outcomes.push({ n, id: job.id, duplicate: job.duplicate });
}
process.stdout.write(`${JSON.stringify(outcomes)}\n`);
await store.close();
