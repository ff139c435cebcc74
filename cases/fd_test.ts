import { caseTests } from "../harness/register.ts";
import { FD_CASES } from "./fd.ts";
import { preloadLibc } from "../engine/os/libc.ts";

// The harness passes descriptors through libc: loaded once, before any case.
preloadLibc();

// Deno.test is called here, so JUnit names the suite after this family.
for (const t of await caseTests(FD_CASES)) Deno.test(t);
