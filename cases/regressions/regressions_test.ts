import { caseTests } from "../../harness/register.ts";
import { REGRESSION_CASES } from "./all.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(REGRESSION_CASES)) Deno.test(t);
