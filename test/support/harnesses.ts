import { postgresHarness } from './postgres-harness.js';
import { sqliteHarness, type StoreHarness } from './stores.js';

/** Every store kind the contract suite runs against. A new store adds its harness here and nothing else. */
export function allHarnesses(): StoreHarness[] {
  return [sqliteHarness(), postgresHarness()];
}
