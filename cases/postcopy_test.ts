import { caseTests } from "../harness/register.ts";
import { POSTCOPY_CASES } from "./postcopy.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(POSTCOPY_CASES)) Deno.test(t);
