/**
 * The QAPI side of a command: argument types named after QAPI's builtins, the validation of a request's
 * arguments with QEMU's messages, and the error (class and description) a failed command returns.
 */
import { isObject } from "./json.ts";

/** Argument types, named after QAPI's builtin types. */
export type QmpArgType =
  | "str"
  | "int"
  | "number"
  | "bool"
  | "any"
  | "array"
  | "object"
  | { enum: readonly string[] }
  | { array: QmpArgType };

export interface QmpArgSpec {
  [name: string]: { type: QmpArgType; optional?: boolean };
}

/** Thrown by handlers to produce `{"error": {"class": klass, "desc": desc}}`. */
export class QmpError extends Error {
  readonly klass: string;
  readonly desc: string;
  /** `new QmpError(desc)` is a GenericError; `new QmpError(klass, desc)` picks the class. */
  constructor(klassOrDesc: string, desc?: string) {
    const klass = desc === undefined ? "GenericError" : klassOrDesc;
    const d = desc === undefined ? klassOrDesc : desc;
    super(`${klass}: ${d}`);
    this.name = "QmpError";
    this.klass = klass;
    this.desc = d;
  }
}

function qapiTypeName(t: QmpArgType): string {
  if (typeof t === "object") return "enum" in t ? "string" : "array";
  return ({
    str: "string",
    int: "integer",
    number: "number",
    bool: "boolean",
    any: "any",
    array: "array",
    object: "object",
  } as const)[t];
}

function checkValue(path: string, t: QmpArgType, v: unknown): void {
  let ok: boolean;
  if (typeof t === "object") {
    if ("enum" in t) {
      if (typeof v !== "string") ok = false;
      else if (!t.enum.includes(v)) throw new QmpError(`Parameter '${path}' does not accept value '${v}'`);
      else ok = true;
    } else {
      ok = Array.isArray(v);
      if (ok) (v as unknown[]).forEach((e, i) => checkValue(`${path}[${i}]`, t.array, e));
    }
  } else {
    switch (t) {
      case "any":
        ok = true;
        break;
      case "str":
        ok = typeof v === "string";
        break;
      case "int":
        ok = (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
        break;
      case "number":
        ok = typeof v === "number" || typeof v === "bigint";
        break;
      case "bool":
        ok = typeof v === "boolean";
        break;
      case "array":
        ok = Array.isArray(v);
        break;
      case "object":
        ok = isObject(v);
        break;
    }
  }
  if (!ok) throw new QmpError(`Invalid parameter type for '${path}', expected: ${qapiTypeName(t)}`);
}

/** Checks `args` against `spec` in QEMU's order: members in spec order, then unexpected ones. */
export function validateArgs(spec: QmpArgSpec | undefined, args: Record<string, unknown>): void {
  const s = spec ?? {};
  for (const [name, { type, optional }] of Object.entries(s)) {
    if (!Object.hasOwn(args, name)) {
      if (!optional) throw new QmpError(`Parameter '${name}' is missing`);
      continue;
    }
    checkValue(name, type, args[name]);
  }
  for (const name of Object.keys(args)) {
    if (!Object.hasOwn(s, name)) throw new QmpError(`Parameter '${name}' is unexpected`);
  }
}
