// Resolves the bare specifier 'better-sqlite3' as if it were imported from the folder register.mjs
// names, and passes every other specifier through.
let parentURL;

export function initialize(data) {
  parentURL = data.parentURL;
}

export async function resolve(specifier, context, nextResolve) {
  if (specifier === 'better-sqlite3' && parentURL) return nextResolve(specifier, { ...context, parentURL });
  return nextResolve(specifier, context);
}
