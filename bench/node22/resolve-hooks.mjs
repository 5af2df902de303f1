// The resolve hook registered by register.mjs: 'better-sqlite3', imported from
// anywhere, resolves as if it were imported from bench/node22/, so the copy
// compiled for Node 22 is loaded. Every other specifier passes through.
const here = new URL('./package.json', import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  if (specifier === 'better-sqlite3') return nextResolve(specifier, { ...context, parentURL: here });
  return nextResolve(specifier, context);
}
