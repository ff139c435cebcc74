import assert from "node:assert/strict";
import { BytesLink, readAll } from "../../engine/transport/buffer.ts";
import { bytesSource, fileSource, openSource } from "./source.ts";
import { withTempDir } from "./analyze_test_util.ts";

const BYTES = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);

async function readFrom(src: Awaited<ReturnType<typeof fileSource>>, offset: number): Promise<Uint8Array> {
  const link = await src.open(offset);
  try {
    return await readAll(link);
  } finally {
    link.close();
  }
}

Deno.test("source: bytes: size, tail (clamped to the start) and a link from an offset", async () => {
  const src = bytesSource(BYTES);
  assert.equal(src.size, 300);
  assert.deepEqual(await src.tail(10), BYTES.subarray(290));
  assert.deepEqual(await src.tail(1000), BYTES);
  assert.deepEqual(await readFrom(src, 100), BYTES.subarray(100));
  assert.equal(src.description, "memory");
});

Deno.test("source: a file gives the same as its bytes", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.bin`;
    await Deno.writeFile(path, BYTES);
    const src = await fileSource(path);
    assert.equal(src.size, 300);
    assert.equal(src.description, `file:${path}`);
    assert.deepEqual(await src.tail(10), BYTES.subarray(290));
    assert.deepEqual(await src.tail(1000), BYTES);
    assert.deepEqual(await readFrom(src, 100), BYTES.subarray(100));
    assert.deepEqual(await readFrom(src, 300), new Uint8Array());
  });
});

Deno.test("source: openSource reads a Link to its end and keeps its description", async () => {
  const link = new BytesLink(BYTES, "a link");
  try {
    const src = await openSource(link);
    assert.equal(src.size, 300);
    assert.equal(src.description, "a link");
    assert.deepEqual(await src.tail(5), BYTES.subarray(295));
    assert.deepEqual(await readFrom(src, 0), BYTES);
  } finally {
    link.close();
  }
  assert.equal((await openSource(BYTES)).size, 300);
});
