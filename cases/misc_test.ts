import { caseTests } from "../harness/register.ts";
import { MISC_CASES } from "./misc.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(MISC_CASES)) Deno.test(t);
