/** The misc family (upstream's misc-tests.c): a destination nobody listens on. */
import { defineFlow } from "../../family.ts";
import type { BadDestCase } from "./case.ts";
import { badDestFlow } from "./flow.ts";

export const badDest = defineFlow<BadDestCase>({
  flow: "bad-dest",
  fields: { flow: true },
  run: badDestFlow,
});

/** The misc family's flows (one entry of the registry). */
export const MISC = [badDest] as const;
