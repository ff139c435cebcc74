import { caseTests } from "../harness/register.ts";
import { BAD_STREAM_CASES } from "./bad_stream.ts";

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(BAD_STREAM_CASES)) Deno.test(t);
