/**
 * Optimal string alignment distance: insertions, deletions, substitutions and swaps of adjacent
 * characters each count one ("scope" is 1 from "scopes", "nmae" 1 from "name", PROT 1 from PORT).
 * For the "did you mean" of the CLI and of the configuration.
 */
export function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      let best = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, before[j - 2]! + 1);
      current[j] = best;
    }
    [before, previous] = [previous, current];
  }
  return previous[b.length]!;
}
