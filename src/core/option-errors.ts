import { ConfigurationError } from './errors.js';

/** Formats a configured value for an error: strings quoted, so "4" does not read as the number 4, and objects as JSON. */
export function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
  return String(value);
}

/**
 * Throws for an option name that `known` lacks. A misspelled option would
 * otherwise leave its default in force without a word: `leaseMS: 60_000`
 * would keep the 10 s lease, and a job longer than that would run twice.
 */
export function rejectUnknownOptions(owner: string, options: unknown, known: readonly string[]): void {
  // Options that are not an object at all are left to the owner's own checks, which name what belongs there.
  if (options === null || typeof options !== 'object') return;
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    const likely = closestName(name, known);
    const hint = likely === undefined ? '' : ` Did you mean ${likely}?`;
    throw new ConfigurationError(`${owner} has no option ${JSON.stringify(name)}.${hint} Its options are ${known.join(', ')}.`);
  }
}

/** Returns the known name that differs from `name` only in case, or by at most two edits, if exactly one does. */
function closestName(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  const sameLetters = known.filter((candidate) => candidate.toLowerCase() === lower);
  if (sameLetters.length === 1) return sameLetters[0];
  const near = known.filter((candidate) => editDistance(lower, candidate.toLowerCase()) <= 2);
  return near.length === 1 ? near[0] : undefined;
}

/** Levenshtein distance: the fewest insertions, deletions and substitutions that turn one string into the other. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const substitution = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] as number;
}
