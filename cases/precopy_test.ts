import { caseTests } from "../harness/register.ts";
import { PRECOPY_CASES } from "./precopy.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(PRECOPY_CASES)) Deno.test(t);
