import assert from "node:assert/strict";
import { fileIncoming, fileOutgoing } from "./file.ts";

Deno.test("file link: positioned writes leave the stream alone; the writer cuts at the furthest byte", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, new Uint8Array(64).fill(0x58));
    const out = await fileOutgoing(path, 8);
    await out.write(new Uint8Array([1, 2, 3]));
    await out.pwrite(new Uint8Array([9, 9]), 30);
    assert.equal(out.tell(), 11, "the stream went on after its own bytes only");
    await out.write(new Uint8Array([4]));
    out.truncateToEnd();
    out.close();
    const bytes = await Deno.readFile(path);
    assert.equal(bytes.length, 32);
    assert.deepEqual([...bytes.subarray(0, 12)], [88, 88, 88, 88, 88, 88, 88, 88, 1, 2, 3, 4]);
    assert.deepEqual([...bytes.subarray(30)], [9, 9]);
    const inp = await fileIncoming(path, 8);
    const buf = new Uint8Array(4);
    assert.equal(await inp.pread(buf, 30), 2, "a read at the end returns what is there");
    await inp.seek(9);
    const one = new Uint8Array(1);
    assert.equal(await inp.read(one), 1);
    assert.equal(one[0], 2);
    inp.close();
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("file link: a direct (O_DIRECT) handle refuses unaligned positioned I/O with EINVAL", async () => {
  const path = await Deno.makeTempFile();
  try {
    const out = await fileOutgoing(path, 0, { direct: true });
    await out.pwrite(new Uint8Array(8192), 4096);
    await assert.rejects(
      out.pwrite(new Uint8Array(4096), 512),
      /Invalid argument \(os error 22\).*offset 512/,
    );
    await assert.rejects(out.pwrite(new Uint8Array(100), 0), /Invalid argument.*100 bytes/);
    out.close();
    const inp = await fileIncoming(path, 0, { direct: true });
    assert.equal(await inp.pread(new Uint8Array(4096), 8192), 4096);
    await assert.rejects(inp.pread(new Uint8Array(4096), 1), /Invalid argument/);
    inp.close();
  } finally {
    await Deno.remove(path);
  }
});
