import { caseTests } from "../harness/register.ts";
import { COLO_CASES } from "./colo.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(COLO_CASES)) Deno.test(t);
