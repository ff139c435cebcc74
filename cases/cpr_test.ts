import { caseTests } from "../harness/register.ts";
import { CPR_CASES } from "./cpr.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(CPR_CASES)) Deno.test(t);
