import { postgresHarness } from './postgres-harness.js';
import { type StoreHarness, sqliteHarness } from './stores.js';

/** Every store kind the contract suite runs against. A new store adds its harness here and nothing else. */
export function allHarnesses(): StoreHarness[] {
  return [sqliteHarness(), postgresHarness()];
}
