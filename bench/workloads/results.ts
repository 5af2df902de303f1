/** Samples from every repetition, and their medians. */

export interface Sample {
  workload: string;
  system: string;
  /** What varies inside a workload: "c=10", "effect", "1,000,000 waiting". */
  point: string;
  metric: string;
  value: number;
  /** The value is a lower bound (a rate measured until a time cap) or an upper bound ("> cap"). */
  bound?: 'capped' | 'over';
}

export class Results {
  readonly samples: Sample[] = [];

  add(sample: Sample): void {
    this.samples.push(sample);
  }

  /** The median of one cell, and whether any of its samples was bounded. */
  median(
    workload: string,
    system: string,
    point: string,
    metric: string,
  ): { value: number; bound?: Sample['bound']; n: number } | undefined {
    const matching = this.samples.filter((s) => s.workload === workload && s.system === system && s.point === point && s.metric === metric);
    if (matching.length === 0) return undefined;
    const value = median(matching.map((s) => s.value));
    const bound = matching.find((s) => s.bound)?.bound;
    return { value, n: matching.length, ...(bound ? { bound } : {}) };
  }
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** The q-quantile (0..1) by nearest rank; jobs that never started count as infinitely late. */
export function quantile(values: readonly number[], q: number, total = values.length): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * total));
  return rank <= sorted.length ? (sorted[rank - 1] as number) : Number.POSITIVE_INFINITY;
}
