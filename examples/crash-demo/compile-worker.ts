/**
 * Compiles a worker entry file and the vouch sources it imports to
 * JavaScript, so that each worker process starts with plain `node`. A worker
 * started through tsx compiles TypeScript at every start, which costs about
 * half a second of CPU. The demo restarts workers several times a second, so
 * that cost decides how many kills it can deliver. npm packages stay
 * external and load from node_modules as usual. Returns the entry file.
 */

import { join } from 'node:path';
import { build } from 'esbuild';

export async function compileWorker(entryFile: string, outputFolder: string, name: string): Promise<string> {
  const outdir = join(outputFolder, name);
  await build({
    entryPoints: { worker: entryFile },
    outdir,
    outExtension: { '.js': '.mjs' },
    // Splitting keeps dynamic imports lazy, so a SQLite worker never loads the PostgreSQL store and `pg`.
    splitting: true,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'error',
  });
  return join(outdir, 'worker.mjs');
}
