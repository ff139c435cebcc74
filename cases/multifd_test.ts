import { caseTests } from "../harness/register.ts";
import { MULTIFD_CASES } from "./multifd.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(MULTIFD_CASES)) Deno.test(t);
