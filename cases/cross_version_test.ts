import { caseTests } from "../harness/register.ts";
import { CROSS_VERSION_CASES } from "./cross_version.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(CROSS_VERSION_CASES)) Deno.test(t);
