import { ConfigurationError } from './errors.js';

/** Formats a configured value for an error: strings quoted, so "4" does not read as the number 4, and objects as JSON. */
export function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'an invalid Date' : `the Date ${value.toISOString()}`;
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
 * Throws for the option names that `known` lacks. A misspelled option would
 * otherwise leave its default in force without a word: `leaseMS: 60_000`
 * would keep the 10 s lease, and a job longer than that would run twice.
 * `placed` gives, for an option that belongs somewhere else, where it goes;
 * `otherwise` is a sentence added after the list of options.
 */
export function rejectUnknownOptions(
  owner: string,
  options: unknown,
  known: readonly string[],
  advice: { placed?: Readonly<Record<string, string>>; otherwise?: string } = {},
): void {
  // Options that are not an object at all are left to the owner's own checks, which name what belongs there.
  if (options === null || typeof options !== 'object') return;
  const unknown = Object.keys(options).filter((name) => !known.includes(name));
  if (unknown.length === 0) return;
  const described = unknown.map((name) => {
    const placed = advice.placed?.[name];
    if (placed !== undefined) return `${JSON.stringify(name)} (${placed})`;
    const likely = closestName(name, known);
    return likely === undefined ? JSON.stringify(name) : `${JSON.stringify(name)} (did you mean ${likely}?)`;
  });
  const list = described.length === 1 ? `option ${described[0]}` : `options ${described.slice(0, -1).join(', ')} and ${described.at(-1)}`;
  const otherwise = advice.otherwise === undefined ? '' : ` ${advice.otherwise}`;
  throw new ConfigurationError(`${owner} has no ${list}. Its options are ${known.join(', ')}.${otherwise}`);
}

/**
 * Returns the known name most likely meant, if exactly one fits at the first
 * rule that any fits. The first rule is the same letters in another case.
 * The second is a small edit distance: one edit for names of up to four
 * letters, two for longer ones. The third is the same start, as in retries
 * and retry.
 */
function closestName(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  const only = (candidates: readonly string[]) => (candidates.length === 1 ? candidates[0] : undefined);
  const allowed = name.length <= 4 ? 1 : 2;
  return (
    only(known.filter((candidate) => candidate.toLowerCase() === lower)) ??
    only(known.filter((candidate) => editDistance(lower, candidate.toLowerCase()) <= allowed)) ??
    only(known.filter((candidate) => sharesStart(lower, candidate.toLowerCase())))
  );
}

/** True when two names start with the same letters: at least four, and at least half of the shorter name. */
function sharesStart(a: string, b: string): boolean {
  let shared = 0;
  while (shared < a.length && shared < b.length && a[shared] === b[shared]) shared += 1;
  return shared >= 4 && shared * 2 >= Math.min(a.length, b.length);
}

/**
 * Edit distance with adjacent transpositions (optimal string alignment): the
 * fewest insertions, deletions, substitutions and swaps of neighbouring
 * letters that turn one string into the other, so that "nmae" is one edit
 * from "name".
 */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [Array.from({ length: b.length + 1 }, (_, index) => index)];
  for (let i = 1; i <= a.length; i += 1) {
    const row = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const above = rows[i - 1] as number[];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min((above[j] as number) + 1, (row[j - 1] as number) + 1, (above[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, ((rows[i - 2] as number[])[j - 2] as number) + 1);
      }
      row.push(best);
    }
    rows.push(row);
  }
  return (rows[a.length] as number[])[b.length] as number;
}
