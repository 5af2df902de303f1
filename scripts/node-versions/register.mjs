// Loaded with --import (through NODE_OPTIONS, so child processes inherit it) when the tests run on
// another Node major. The root node_modules contains better-sqlite3 compiled for the Node that ran
// `npm install`, and a native module fails to load under another major. So 'better-sqlite3' is
// resolved from VOUCH_NODE_VERSION_DIR instead, where test-node.sh compiled it for the Node in use.
import { register } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const folder = process.env.VOUCH_NODE_VERSION_DIR;
if (folder) {
  register('./resolve-hooks.mjs', import.meta.url, { data: { parentURL: pathToFileURL(join(folder, 'package.json')).href } });
}
