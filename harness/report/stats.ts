/** Summary statistics shared by the matrix, the HTML report and the bench: mean and quantile by rank. */

export const mean = (xs: readonly number[]): number | undefined =>
  xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;

/** The `p` quantile (0..1) by rank; undefined for no samples. */
export function quantile(xs: readonly number[], p: number): number | undefined {
  if (!xs.length) return undefined;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}
