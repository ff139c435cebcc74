import { caseTests } from "../harness/register.ts";
import { DIRTYRATE_CASES } from "./dirtyrate.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(DIRTYRATE_CASES)) Deno.test(t);
