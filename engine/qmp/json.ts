/**
 * QMP's JSON: the framing of a character stream into top-level values (QEMU's json-streamer), parsing
 * with 64-bit integers kept exact, and serialization in QEMU's compact layout.
 */

export type JsonStreamItem = { text: string } | { error: string };

const MAX_VALUE_CHARS = 16 << 20;
const MAX_DEPTH = 1024;
const BARE_CHAR = /[A-Za-z0-9+\-.]/;
const WS = /[ \t\r\n]/;

/**
 * Splits a character stream into top-level JSON values by bracket counting, aware of (single or double
 * quoted) strings, so values can be split across or merged within reads with or without separators.
 */
export class JsonStreamSplitter {
  #carry = "";
  #inValue = false;
  #depth = 0;
  #quote = "";
  #escape = false;
  #bare = false;
  #discard = false;

  push(chunk: string): JsonStreamItem[] {
    const out: JsonStreamItem[] = [];
    let start = 0;
    const emit = (end: number) => {
      out.push({ text: this.#carry + chunk.slice(start, end) });
      this.#carry = "";
      this.#inValue = false;
      this.#bare = false;
    };
    const fail = (error: string) => {
      out.push({ error });
      this.#carry = "";
      this.#inValue = false;
      this.#bare = false;
      this.#depth = 0;
      this.#quote = "";
      this.#escape = false;
      // The rest of the offending value would be garbage; resynchronize at the next line.
      this.#discard = true;
    };
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (this.#discard) {
        if (c === "\n") this.#discard = false;
        continue;
      }
      if (this.#quote) {
        if (this.#escape) this.#escape = false;
        else if (c === "\\") this.#escape = true;
        else if (c === this.#quote) {
          this.#quote = "";
          if (this.#depth === 0) emit(i + 1);
        }
        continue;
      }
      if (this.#bare) {
        if (BARE_CHAR.test(c)) continue;
        emit(i);
      }
      if (!this.#inValue) {
        if (WS.test(c)) continue;
        start = i;
        this.#inValue = true;
        if (c === "{" || c === "[") this.#depth = 1;
        else if (c === '"' || c === "'") this.#quote = c;
        else if (BARE_CHAR.test(c)) this.#bare = true;
        else {
          // A stray delimiter cannot start a value; report it alone and carry on.
          out.push({ error: `JSON parse error, stray '${c}'` });
          this.#inValue = false;
        }
        continue;
      }
      if (c === '"' || c === "'") this.#quote = c;
      else if (c === "{" || c === "[") {
        if (++this.#depth > MAX_DEPTH) fail("JSON parse error, nesting too deep");
      } else if (c === "}" || c === "]") {
        if (--this.#depth === 0) emit(i + 1);
      }
    }
    if (this.#inValue) {
      this.#carry += chunk.slice(start);
      if (this.#carry.length > MAX_VALUE_CHARS) fail("JSON parse error, token too large");
    }
    return out;
  }
}

/** Rewrites QEMU's single-quoted string extension into standard JSON. */
function normalizeQuotes(text: string): string {
  if (!text.includes("'")) return text;
  let out = "";
  let quote = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (!quote) {
      if (c === "'") {
        quote = c;
        out += '"';
      } else {
        if (c === '"') quote = c;
        out += c;
      }
    } else if (c === "\\") {
      const n = text[++i] ?? "";
      // \' is only meaningful inside single quotes; JSON has no such escape.
      out += n === "'" ? "'" : c + n;
    } else if (c === quote) {
      quote = "";
      out += '"';
    } else out += quote === "'" && c === '"' ? '\\"' : c;
  }
  return out;
}

/**
 * A JSON.parse reviver that turns integers beyond 2^53 into bigint (from their source text), so 64-bit
 * QAPI values survive instead of being rounded to doubles.
 */
export function bigintReviver(_key: string, value: unknown, ctx?: { source?: string }): unknown {
  if (
    typeof value === "number" && !Number.isSafeInteger(value) && ctx?.source !== undefined &&
    /^-?\d+$/.test(ctx.source)
  ) return BigInt(ctx.source);
  return value;
}

/**
 * Parses one JSON value; integers beyond 2^53 become bigint so 64-bit QAPI values survive.
 * Accepts QEMU's single-quoted strings.
 */
export function parseQmpJson(text: string): unknown {
  return JSON.parse(normalizeQuotes(text), bigintReviver);
}

/** Serializes like QEMU's compact output (`{"a": 1, "b": [2, 3]}`); bigints become JSON numbers. */
export function qmpStringify(value: unknown): string {
  const stack = new Set<object>();
  const enc = (v: unknown): string | undefined => {
    if (v === null) return "null";
    switch (typeof v) {
      case "string":
        return JSON.stringify(v);
      case "number":
        return Number.isFinite(v) ? JSON.stringify(v) : "null";
      case "bigint":
        return v.toString();
      case "boolean":
        return v ? "true" : "false";
      case "undefined":
      case "function":
      case "symbol":
        return undefined;
    }
    const o = v as object;
    if ("toJSON" in o && typeof o.toJSON === "function") return enc(o.toJSON());
    if (stack.has(o)) throw new TypeError("cannot serialize a cyclic structure");
    stack.add(o);
    try {
      if (Array.isArray(o)) return `[${o.map((e) => enc(e) ?? "null").join(", ")}]`;
      const parts: string[] = [];
      for (const [k, e] of Object.entries(o)) {
        const s = enc(e);
        if (s !== undefined) parts.push(`${JSON.stringify(k)}: ${s}`);
      }
      return `{${parts.join(", ")}}`;
    } finally {
      stack.delete(o);
    }
  };
  const s = enc(value);
  if (s === undefined) throw new TypeError(`cannot serialize a ${typeof value}`);
  return s;
}

/** A JSON object (not an array, not null): what QMP requires of messages and of their members. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
