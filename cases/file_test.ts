import { caseTests } from "../harness/register.ts";
import { FILE_CASES } from "./file.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(FILE_CASES)) Deno.test(t);
