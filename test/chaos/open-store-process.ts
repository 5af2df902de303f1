/**
 * Opens the store at argv[2] and enqueues one job, printing "ok" or the
 * error message. The read-only case runs it as an unprivileged user, because
 * root ignores file modes.
 */
import * as v from 'valibot';
import { Client, defineJob, openStore } from '../../src/index.js';

const probe = defineJob({ name: 'probe', payload: v.object({}), perform: () => 0 });
try {
  const store = await openStore(process.argv[2] as string);
  await new Client({ store }).enqueue(probe, {});
  await store.close();
  console.log('ok');
} catch (error) {
  console.log((error as Error).message);
}
