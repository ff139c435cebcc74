import assert from "node:assert/strict";
import { QmpError, validateArgs } from "./schema.ts";

/** The error `validateArgs` throws, as "Class: desc"; fails when it accepts. */
function rejection(spec: Parameters<typeof validateArgs>[0], args: Record<string, unknown>): string {
  try {
    validateArgs(spec, args);
  } catch (e) {
    assert.ok(e instanceof QmpError, String(e));
    return `${e.klass}: ${e.desc}`;
  }
  assert.fail(`accepted ${JSON.stringify(args)}`);
}

Deno.test("QmpError: GenericError unless a class is given", () => {
  const g = new QmpError("boom");
  assert.equal(g.klass, "GenericError");
  assert.equal(g.desc, "boom");
  assert.equal(g.message, "GenericError: boom");
  const c = new QmpError("CommandNotFound", "The command x has not been found");
  assert.equal(c.klass, "CommandNotFound");
  assert.equal(c.desc, "The command x has not been found");
  assert.ok(c instanceof Error);
});

Deno.test("validateArgs: QEMU's messages, spec members first, then unexpected ones", () => {
  const spec = {
    x: { type: "int" as const },
    e: { type: { enum: ["a", "b"] }, optional: true },
    l: { type: { array: "str" as const }, optional: true },
  };
  assert.equal(
    rejection(spec, { x: 1.5 }),
    "GenericError: Invalid parameter type for 'x', expected: integer",
  );
  assert.equal(rejection(spec, { e: "a" }), "GenericError: Parameter 'x' is missing");
  assert.equal(rejection(spec, { x: 1, e: "c" }), "GenericError: Parameter 'e' does not accept value 'c'");
  assert.equal(
    rejection(spec, { x: 1, l: ["s", 2] }),
    "GenericError: Invalid parameter type for 'l[1]', expected: string",
  );
  assert.equal(rejection(spec, { y: 1 }), "GenericError: Parameter 'x' is missing");
  assert.equal(rejection(spec, { x: 1, y: 1 }), "GenericError: Parameter 'y' is unexpected");
  // A 64-bit value parsed as bigint is an integer.
  validateArgs(spec, { x: 10n, e: "b", l: [] });
  validateArgs(undefined, {});
  assert.equal(rejection(undefined, { y: 1 }), "GenericError: Parameter 'y' is unexpected");
});
