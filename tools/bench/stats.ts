/** Summary statistics and number formatting for the bench output. */

import { mean as meanOf, quantile } from "../../harness/report/stats.ts";

/** The `p` quantile (0..1) of a non-empty sample, by rank. */
export const pct = (xs: number[], p: number): number => quantile(xs, p) ?? NaN;

export const gb = (bps: number): string => `${(bps / 1e9).toFixed(2)} GB/s`;
export const median = (xs: number[]): number => pct(xs, 0.5);
export const mean = (xs: number[]): number => meanOf(xs) ?? NaN;

/** A latency sample as p50, p99, max and n. */
export const fmt = (xs: number[]): string =>
  `p50 ${pct(xs, 0.5).toFixed(2)} ms, p99 ${pct(xs, 0.99).toFixed(2)} ms, max ${
    Math.max(...xs).toFixed(2)
  } ms (n=${xs.length})`;
