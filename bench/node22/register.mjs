// Passed with --import to every Node 22 child of the benchmark, after tsx.
// The root node_modules holds better-sqlite3 compiled for Node 20 (ABI 115),
// which fails to load under Node 22 (ABI 127). This registers a resolve hook
// that sends the bare specifier 'better-sqlite3' to the copy in bench/node22,
// which bench/run.ts compiles for Node 22. See bench/README.md.
import { register } from 'node:module';

register('./resolve-hooks.mjs', import.meta.url);
