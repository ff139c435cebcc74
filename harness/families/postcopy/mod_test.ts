/**
 * The postcopy descriptor's rules, each able to fail: a valid record passes, each broken variant is
 * rejected on the field at fault, and what a case needs from a real QEMU follows from its fields.
 */
import assert from "node:assert/strict";
import type { AnyCase } from "../../case.ts";
import type { FlowDescriptor } from "../../family.ts";
import { caseProblems } from "../../validate.ts";
import type { PostcopyCase } from "./case.ts";
import { postcopy, postcopyCaps } from "./mod.ts";

const BASE: PostcopyCase = {
  name: "/migration/test/postcopy",
  tier: "full",
  flow: "postcopy",
  why: "a valid postcopy record",
  transport: "tcp",
  defer: true,
};

/** The descriptor alone, as the registry would find it (a family's test does not load the others). */
const lookup = (flow: string) =>
  flow === "postcopy" ? postcopy as unknown as FlowDescriptor<AnyCase> : undefined;

/** A record as a spread or a JS caller can build it (the types refuse some of these). */
function problems(c: object): string[] {
  return caseProblems({ ...BASE, ...c } as AnyCase, lookup);
}

function assertRejected(c: object, field: string, what: RegExp): void {
  const p = problems(c);
  assert.ok(
    p.some((line) => line.includes(`${field}: `) && what.test(line)),
    `expected a problem on ${field} matching ${what}, got: ${JSON.stringify(p)}`,
  );
}

Deno.test("postcopy: a valid record and every recovery variant pass", () => {
  assert.deepEqual(problems({}), []);
  for (const recovery of ["plain", "double-failure-handshake", "double-failure-reconnect"] as const) {
    assert.deepEqual(problems({ recovery }), [], recovery);
  }
  assert.deepEqual(problems({ recovery: "plain", failAt: "postcopy-resume-ack" }), []);
  assert.deepEqual(problems({ recovery: "double-failure-handshake", cancelIn: ["postcopy-recover"] }), []);
});

Deno.test("postcopy: a failure at a recovery step needs a plain recovery", () => {
  assertRejected({ failAt: "postcopy-recv-bitmap" }, "failAt", /only in a recovery/);
  assertRejected(
    { recovery: "double-failure-reconnect", failAt: "postcopy-recv-bitmap" },
    "failAt",
    /one failure at a time/,
  );
});

Deno.test("postcopy: a cancel in a status the case never reaches is rejected", () => {
  assertRejected({ cancelIn: ["postcopy-paused"] }, "cancelIn", /comes only in a recovery/);
  assertRejected({ recovery: "plain", cancelIn: ["postcopy-recover"] }, "cancelIn", /lasts only while/);
});

Deno.test("postcopy: the family's capabilities are its own, and a refusing destination must fail", () => {
  assertRejected({ caps: ["postcopy-ram"] }, "caps", /family's to set/);
  assertRejected({ dstCaps: ["postcopy-preempt"] }, "caps", /preempt: true/);
  assertRejected({ dstWithoutPostcopy: true }, "dstWithoutPostcopy", /expect a failure/);
  assertRejected({ windows: ["request-crosses-page"] }, "windows", /expectFaults/);
  assert.deepEqual(
    problems({ windows: ["fault-on-discarded"], expectFaults: true, postcopyBandwidth: 2_000_000 }),
    [],
  );
  assertRejected({ expectFaults: true }, "expectFaults", /postcopyBandwidth/);
  assertRejected({ colo: { survivor: "secondary" } }, "colo", /./);
});

Deno.test("postcopy: capabilities per side and what a real QEMU must have", () => {
  assert.deepEqual(postcopyCaps({ ...BASE, preempt: true }, "dst"), [
    "postcopy-ram",
    "postcopy-blocktime",
    "postcopy-preempt",
  ]);
  assert.deepEqual(postcopyCaps({ ...BASE, dstWithoutPostcopy: true }, "dst"), []);
  assert.deepEqual(postcopyCaps({ ...BASE, dstWithoutPostcopy: true }, "src"), [
    "postcopy-ram",
    "postcopy-blocktime",
  ]);
  const needs = postcopy.needs?.({ ...BASE, recovery: "plain", failAt: "postcopy-recv-bitmap" });
  assert.equal(needs?.heldAt, "a channel failure at postcopy-recv-bitmap");
  assert.equal(needs?.qemu?.length, 4);
  assert.equal(postcopy.needs?.(BASE)?.heldAt, undefined);
  assert.match(
    postcopy.needs?.({ ...BASE, expectFaults: true, postcopyBandwidth: 1, windows: ["fault-on-discarded"] })
      ?.modelCounters ?? "",
    /fault-on-discarded/,
  );
  const reconnect = postcopy.needs?.({ ...BASE, recovery: "double-failure-reconnect" });
  assert.ok(reconnect?.qemu?.some((n) => n.kind === "status" && n.name === "postcopy-recover-setup"));
});
