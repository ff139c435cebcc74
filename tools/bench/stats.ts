/** Summary statistics and number formatting for the bench output. */

/** The `p` quantile (0..1) of `xs`, by rank. */
export const pct = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

export const gb = (bps: number): string => `${(bps / 1e9).toFixed(2)} GB/s`;
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
export const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** A latency sample as p50, p99, max and n. */
export const fmt = (xs: number[]): string =>
  `p50 ${pct(xs, 0.5).toFixed(2)} ms, p99 ${pct(xs, 0.99).toFixed(2)} ms, max ${
    Math.max(...xs).toFixed(2)
  } ms (n=${xs.length})`;
