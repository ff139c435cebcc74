import assert from "node:assert/strict";
import { hostMemory, memoryRegistry, parseMemoryBackend, viewRam } from "./hostmem.ts";
import { preloadLibc } from "./os/libc.ts";

preloadLibc();

Deno.test("hostmem: --memory-backend takes QEMU's property names and says what is wrong", () => {
  assert.deepEqual(parseMemoryBackend("id=mem0,mem-path=/dev/shm/x,share=on"), {
    id: "mem0",
    memPath: "/dev/shm/x",
    share: true,
  });
  assert.equal(parseMemoryBackend("id=m,mem-path=/x").share, false);
  assert.deepEqual(parseMemoryBackend("type=memfd,id=ram0"), { type: "memfd", id: "ram0", share: true });
  assert.throws(() => parseMemoryBackend("type=memfd,id=r,mem-path=/x"), /a memfd has no 'mem-path'/);
  assert.throws(() => parseMemoryBackend("type=hugetlb,id=r"), /type 'hugetlb' is not file or memfd/);
  assert.throws(() => parseMemoryBackend("mem-path=/x"), /Parameter 'id' is missing/);
  assert.throws(() => parseMemoryBackend("id=m"), /'mem-path' is required/);
  assert.throws(() => parseMemoryBackend("id=m,mem-path=/x,share=yes"), /'share' expects 'on' or 'off'/);
  assert.throws(() => parseMemoryBackend("id=m,mem-path=/x,size=1G"), /unknown property 'size'/);
  assert.throws(() => parseMemoryBackend("id=m,mem-path"), /'mem-path' is not NAME=VALUE/);
});

Deno.test("hostmem: share=on maps one file: every mapping, and a vCPU thread's view, is the same memory", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const b = { id: "mem0", memPath: `${dir}/shm`, share: true };
    const one = hostMemory.map(b, 64 * 1024);
    const two = hostMemory.map(b, 64 * 1024);
    one.mem[4097] = 42;
    assert.equal(two.mem[4097], 42);
    assert.equal(viewRam(one.share)[4097], 42);
    viewRam(two.share)[8] = 7;
    assert.equal(one.mem[8], 7);
    assert.equal(Deno.statSync(b.memPath).size, 64 * 1024);
    // share=off: a private copy of the file's contents (writes stay in this process).
    const priv = hostMemory.map({ ...b, share: false }, 64 * 1024);
    assert.equal(priv.mem[4097], 42);
    priv.mem[4097] = 1;
    assert.equal(one.mem[4097], 42);
    assert.throws(
      () => hostMemory.map(b, 128 * 1024),
      /backing store size 0x10000 does not match 'size' option 0x20000/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("hostmem: the simulated host shares one buffer per path; share=off copies it", () => {
  const host = memoryRegistry();
  const b = { id: "mem0", memPath: "/shm/a", share: true };
  const one = host.map(b, 8192);
  const two = host.map(b, 8192);
  one.mem[1] = 5;
  assert.equal(two.mem[1], 5);
  const priv = host.map({ ...b, share: false }, 8192);
  assert.equal(priv.mem[1], 5);
  priv.mem[1] = 6;
  assert.equal(one.mem[1], 5);
  assert.notEqual(host.map({ ...b, memPath: "/shm/b" }, 8192).mem, one.mem);
  host.clear();
  assert.equal(host.map(b, 8192).mem[1], 0);
});
