import assert from "node:assert/strict";
import { bigintReviver, isObject, JsonStreamSplitter, parseQmpJson, qmpStringify } from "./json.ts";

Deno.test("JsonStreamSplitter frames values regardless of chunking", () => {
  const input = '{"a":"}\\"{"} [1,[2]]\n"s\\"t" 12 true{"b":{}}';
  const expected = ['{"a":"}\\"{"}', "[1,[2]]", '"s\\"t"', "12", "true", '{"b":{}}'];
  for (const size of [1, 2, 3, 7, input.length]) {
    const s = new JsonStreamSplitter();
    const got: string[] = [];
    for (let i = 0; i < input.length; i += size) {
      for (const item of s.push(input.slice(i, i + size))) {
        got.push("text" in item ? item.text : `ERR ${item.error}`);
      }
    }
    // The trailing object is complete; the bare token "true" is flushed by the following "{".
    assert.deepEqual(got, expected, `chunk size ${size}`);
  }
  const s = new JsonStreamSplitter();
  assert.deepEqual(s.push("] {}"), [{ error: "JSON parse error, stray ']'" }, { text: "{}" }]);
  assert.deepEqual(s.push("[".repeat(1100) + "\n{}"), [
    { error: "JSON parse error, nesting too deep" },
    { text: "{}" },
  ]);
});

Deno.test("qmpStringify matches QEMU's layout; parseQmpJson keeps big integers", () => {
  assert.equal(
    qmpStringify({ return: { a: [1, "x", null, true], b: {}, c: [], u: undefined, big: 1n << 64n }, id: 1 }),
    '{"return": {"a": [1, "x", null, true], "b": {}, "c": [], "big": 18446744073709551616}, "id": 1}',
  );
  assert.deepEqual(parseQmpJson('{"n":18446744073709551615,"m":-9223372036854775808,"f":1e300,"s":5}'), {
    n: 18446744073709551615n,
    m: -9223372036854775808n,
    f: 1e300,
    s: 5,
  });
  assert.deepEqual(parseQmpJson(`{'a': "it's", 'b': 'say "hi"'}`), { a: "it's", b: 'say "hi"' });
});

Deno.test("bigintReviver: only integers beyond 2^53 become bigint, from their source text", () => {
  const parse = (text: string) => JSON.parse(text, bigintReviver);
  // 2^53 + 1 rounds to 2^53 as a double: the reviver must read the digits, not the number.
  assert.equal(parse("9007199254740993"), 9007199254740993n);
  assert.equal(parse("-9007199254740993"), -9007199254740993n);
  assert.equal(parse("9007199254740991"), 9007199254740991, "the largest safe integer stays a number");
  assert.equal(typeof parse("9007199254740991"), "number");
  // Unsafe but not written as an integer: a double, as JSON means it.
  assert.equal(parse("1e300"), 1e300);
  assert.equal(parse("9007199254740993.0"), 9007199254740992);
  assert.deepEqual(parse('{"a":[18446744073709551615]}'), { a: [18446744073709551615n] });
});

Deno.test("isObject: a JSON object, not an array or null", () => {
  assert.equal(isObject({}), true);
  assert.equal(isObject({ a: 1 }), true);
  assert.equal(isObject([]), false);
  assert.equal(isObject(null), false);
  assert.equal(isObject("{}"), false);
  assert.equal(isObject(1), false);
  assert.equal(isObject(undefined), false);
});
