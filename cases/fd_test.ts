import { caseTests } from "../harness/register.ts";
import { FD_CASES } from "./fd.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(FD_CASES)) Deno.test(t);
