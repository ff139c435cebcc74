/**
 * Which cases a run selects, the same for `deno task matrix` and the replay line it prints: a filter that
 * equals a case's name selects exactly that case; otherwise it selects every case whose name contains it;
 * a regex selects the names it matches. Named cases run whatever their tier: `--tier` narrows only when it
 * is given; with no filter the tier defaults to smoke (upstream's default run).
 */
import { type AnyCase, inTier, type Tier } from "./case.ts";

export interface Selection {
  tier?: Tier;
  /** Exact names or substrings. */
  filters?: readonly string[];
  /** JavaScript regular expressions over case names. */
  regexes?: readonly RegExp[];
}

/** What a selection matches, in table order. */
export function selectCases<C extends AnyCase>(cases: readonly C[], s: Selection): C[] {
  const filters = s.filters ?? [];
  const regexes = s.regexes ?? [];
  const named = filters.length > 0 || regexes.length > 0;
  const tier = s.tier ?? (named ? undefined : "smoke");
  const names = new Set(cases.map((c) => c.name));
  const matches = (name: string) =>
    !named ||
    filters.some((f) => names.has(f) ? name === f : name.includes(f)) ||
    regexes.some((r) => r.test(name));
  return cases.filter((c) => (tier === undefined || inTier(c, tier)) && matches(c.name));
}

/** The family of a case: the path component after /migration (precopy, multifd, colo, ...). */
export function familyOf(name: string): string {
  return name.split("/")[2] ?? "";
}

/** A regex that matches exactly `name` (for Deno's --filter, which takes /regex/ or a substring). */
export function exactNameRegex(name: string): string {
  return `/^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$/`;
}
