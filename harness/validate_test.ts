/**
 * The validator's rules, each proven able to fail: a valid record passes, and each broken variant is
 * rejected with a message that names the case and the field. The shipped tables must pass it.
 */
import assert from "node:assert/strict";
import { ALL_CASES } from "../cases/all.ts";
import type { ColoCase } from "./families/colo/case.ts";
import { caseProblems, type MigrationCase, validateCases } from "./families/mod.ts";
import type { PrecopyCase } from "./families/precopy/case.ts";
import { CaseTableError } from "./validate.ts";

const PRECOPY: PrecopyCase = {
  name: "/migration/test/precopy",
  tier: "full",
  flow: "precopy",
  why: "a valid precopy record",
  transport: "unix",
};

const COLO: ColoCase = {
  name: "/migration/test/colo",
  tier: "full",
  flow: "colo",
  why: "a valid COLO record",
  transport: "tcp",
  caps: ["x-colo"],
  colo: { survivor: "secondary" },
};

/** Deliberately ill-typed records (the types refuse most of them): what a spread or JS caller can build. */
function problems(c: object): string[] {
  return caseProblems(c as MigrationCase);
}

function assertRejected(c: object, field: string, what: RegExp): void {
  const p = problems(c);
  const name = (c as { name: string }).name;
  assert.ok(
    p.some((line) => line.startsWith(`case '${name}': ${field}: `) && what.test(line)),
    `expected a problem on ${field} matching ${what}, got: ${JSON.stringify(p)}`,
  );
}

Deno.test("validate: the shipped tables are valid", () => {
  assert.equal(validateCases(ALL_CASES), ALL_CASES);
});

Deno.test("validate: valid records pass", () => {
  assert.deepEqual(caseProblems(PRECOPY), []);
  assert.deepEqual(caseProblems(COLO), []);
});

Deno.test("validate: a field its flow would ignore is rejected (a file case with a socket fault)", () => {
  assertRejected(
    {
      name: "/migration/test/file",
      tier: "full",
      flow: "file",
      why: "x",
      fault: { kind: "truncate", offset: 9 },
    },
    "fault",
    /not a field of a 'file' case/,
  );
  assertRejected({ ...COLO, cancelAfter: "active" }, "cancelAfter", /not a field of a 'colo' case/);
});

Deno.test("validate: name, tier, why and flow", () => {
  assertRejected({ ...PRECOPY, name: "precopy/plain" }, "name", /\/migration\/\.\.\. path/);
  assertRejected({ ...PRECOPY, tier: "nightly" }, "tier", /smoke\|full\|slow/);
  assertRejected({ ...PRECOPY, why: "" }, "why", /missing/);
  assertRejected({ ...PRECOPY, why: "two\nlines" }, "why", /one line/);
  assertRejected({ ...PRECOPY, flow: "no-such-flow" }, "flow", /unknown flow 'no-such-flow'/);
});

Deno.test("validate: capabilities, parameters, machines and defects must exist", () => {
  assertRejected({ ...PRECOPY, caps: ["multifd", "teleport"] }, "caps", /unknown capability 'teleport'/);
  assertRejected({ ...PRECOPY, srcParams: { "max-speed": 1 } }, "srcParams", /unknown parameter 'max-speed'/);
  assertRejected({ ...PRECOPY, machine: "q99" }, "machine", /unknown machine 'q99'/);
  assertRejected({ ...PRECOPY, defects: { dst: ["no-such-bug"] } }, "defects.dst", /unknown defect/);
  assertRejected({ ...PRECOPY, guards: { side: "dst", defect: "no-such-bug" } }, "guards.defect", /unknown/);
});

Deno.test("validate: a cross-version case names known releases, and a different one on each side", () => {
  assert.deepEqual(caseProblems({ ...PRECOPY, release: { src: "serial-v1" } }), []);
  assertRejected({ ...PRECOPY, release: { dst: "v0.1" } }, "release.dst", /unknown release 'v0.1'/);
  assertRejected(
    { ...PRECOPY, release: { src: "before-serial-tx", dst: "before-serial-tx" } },
    "release",
    /both sides run the same release/,
  );
  assertRejected({ ...COLO, release: { src: "serial-v1" } }, "release", /not a field of a 'colo' case/);
});

Deno.test("validate: a multifd parameter needs the multifd capability on its side", () => {
  assertRejected(
    { ...PRECOPY, srcParams: { "multifd-channels": 4 } },
    "srcParams",
    /'multifd-channels' does nothing without the multifd capability on the source/,
  );
  assert.deepEqual(caseProblems({ ...PRECOPY, caps: ["multifd"], srcParams: { "multifd-channels": 4 } }), []);
});

Deno.test("validate: exitOnError needs defer; error needs a failing outcome; xbzrle pages need xbzrle", () => {
  assertRejected({ ...PRECOPY, exitOnError: false }, "exitOnError", /needs defer/);
  assertRejected({ ...PRECOPY, error: /x/ }, "error", /only a failing case/);
  assertRejected({ ...PRECOPY, expectXbzrlePages: true }, "expectXbzrlePages", /xbzrle capability/);
  assertRejected({ ...PRECOPY, iterations: 2 }, "iterations", /only a live case/);
  assertRejected({ ...PRECOPY, live: true, fillRandom: true }, "fillRandom", /not with live/);
});

Deno.test("validate: faults act on the side and channel they can", () => {
  assertRejected(
    { ...PRECOPY, fault: { kind: "multifd-channel-delay", channel: 0, delayMs: 5 } },
    "fault",
    /acts on the destination/,
  );
  assertRejected(
    { ...PRECOPY, dstFaults: [{ kind: "corrupt", offset: 1 }] },
    "dstFaults",
    /acts on the source/,
  );
  assertRejected({ ...PRECOPY, fault: { kind: "corrupt", channel: 1, offset: 3 } }, "fault", /needs multifd/);
  assertRejected({ ...PRECOPY, fault: { kind: "truncate" } }, "fault", /needs an offset/);
  assertRejected(
    { ...PRECOPY, fault: { kind: "truncate", offset: 1, xor: 1 } },
    "fault",
    /xor is for 'corrupt'/,
  );
  const slow = { kind: "multifd-channel-slow", channel: 0 } as const;
  const multifd: PrecopyCase = { ...PRECOPY, caps: ["multifd"] };
  assertRejected({ ...multifd, dstFaults: [slow] }, "dstFaults", /'multifd-channel-slow' needs delayMs/);
  assertRejected(
    { ...multifd, fault: { kind: "corrupt", offset: 1, delayMs: 3 } },
    "fault",
    /delayMs is for/,
  );
  assert.deepEqual(caseProblems({ ...multifd, dstFaults: [{ ...slow, delayMs: 4 }] }), []);
  const cancel = {
    name: "/migration/cancel/x",
    tier: "full",
    flow: "cancel",
    why: "w",
    cancelAfter: "setup",
  };
  assertRejected({ ...cancel, whenBlocked: true }, "whenBlocked", /only a cancel while 'active'/);
  assertRejected({ ...cancel, dstFaults: [{ ...slow, delayMs: 4 }] }, "dstFaults", /needs multifd/);
});

Deno.test("validate: COLO scenarios and the other flows' own rules", () => {
  assertRejected({ ...COLO, caps: [] }, "caps", /x-colo on both sides/);
  assertRejected(
    { ...COLO, colo: { survivor: "secondary", checkpoints: 0 } },
    "colo.checkpoints",
    /positive/,
  );
  assertRejected(
    { ...COLO, colo: { survivor: "secondary", duringCheckpoint: true, failoverDuringApply: true } },
    "colo",
    /one failure moment at a time/,
  );
  assertRejected(
    { ...COLO, colo: { survivor: "primary", killPrimaryAt: "colo-stopped" } },
    "colo.killPrimaryAt",
    /secondary is the survivor/,
  );
  assertRejected(
    { ...COLO, colo: { survivor: "secondary", failoverDuringMultifdPacket: true } },
    "colo.failoverDuringMultifdPacket",
    /needs multifd/,
  );
  const cancel = { name: "/migration/test/cancel", tier: "full", flow: "cancel", why: "x" };
  assertRejected({ ...cancel, cancelAfter: "paused" }, "cancelAfter", /unknown status 'paused'/);
  const mc = { name: "/migration/test/mc", tier: "full", flow: "multifd-cancel", why: "x", transport: "tcp" };
  assertRejected(mc, "caps", /needs the multifd capability/);
  assertRejected(mc, "defer", /set defer/);
});

Deno.test("validate: a table with a duplicate name is rejected, listing every problem", () => {
  assert.throws(
    () => validateCases([PRECOPY, { ...PRECOPY, why: "" }]),
    (e: unknown) => {
      assert.ok(e instanceof CaseTableError);
      assert.deepEqual(e.problems, [
        "case '/migration/test/precopy': why: missing: say what bug class it guards",
        "case '/migration/test/precopy': name: duplicate",
      ]);
      return true;
    },
  );
});
