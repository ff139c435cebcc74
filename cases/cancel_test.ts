import { caseTests } from "../harness/register.ts";
import { CANCEL_CASES } from "./cancel.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(CANCEL_CASES)) Deno.test(t);
