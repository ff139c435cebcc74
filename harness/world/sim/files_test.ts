import assert from "node:assert/strict";
import { SimFiles } from "./files.ts";

Deno.test("sim files: the host file's semantics in memory (offset, positioned I/O, cut, direct)", async () => {
  const files = new SimFiles();
  await assert.rejects(files.incoming("/x/migfile", 0), /No such file or directory/);
  const head = await files.outgoing("/x/migfile", 0);
  await head.write(new Uint8Array(8).fill(0x58));
  head.close();
  const out = await files.outgoing("/x/migfile", 8);
  await out.write(new Uint8Array([1, 2]));
  await out.pwrite(new Uint8Array([7]), 20);
  assert.equal(out.tell(), 10);
  out.truncateToEnd();
  const inp = await files.incoming("/x/migfile", 8);
  const buf = new Uint8Array(4);
  assert.equal(await inp.read(buf), 4);
  assert.deepEqual([...buf], [1, 2, 0, 0]);
  assert.equal(await inp.pread(buf, 20), 1, "the file ends after the furthest byte written");
  await inp.seek(21);
  assert.equal(await inp.read(buf), null);
  const direct = await files.outgoing("/x/migfile", 0, { direct: true });
  await assert.rejects(direct.pwrite(new Uint8Array(10), 4096), /Invalid argument \(os error 22\)/);
  await direct.pwrite(new Uint8Array(4096), 4096);
  out.close();
  inp.close();
  direct.close();
  await assert.rejects(direct.pwrite(new Uint8Array(4096), 0), /channel closed/);
});
