import { caseTests } from "../harness/register.ts";
import { TLS_CASES } from "./tls.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(TLS_CASES)) Deno.test(t);
