import assert from "node:assert/strict";
import { type FdHost, fileFlags, MonitorFds } from "./fds.ts";

/** A descriptor table in memory: each number an access mode and O_DIRECT; closes and dups recorded. */
function fakeHost(modes: Record<number, [number, boolean]>) {
  const closed: number[] = [];
  let next = 100;
  const host: FdHost = {
    close: (fd) => void closed.push(fd),
    dup: (fd) => {
      modes[next] = modes[fd];
      return next++;
    },
    accessMode: (fd) => modes[fd]?.[0] ?? -1,
    isDirect: (fd) => modes[fd]?.[1] ?? false,
    link: () => {
      throw new Error("not here");
    },
    file: () => Promise.reject(new Error("not here")),
  };
  return { host, closed };
}

Deno.test("monitor fds: getfd names per connection, migrate takes the name, closefd then finds nothing", () => {
  const { host, closed } = fakeHost({ 5: [2, false], 6: [2, false] });
  const m = new MonitorFds(host);
  m.getfd(1, "fd-mig", 5);
  assert.throws(() => m.take(2, "fd-mig"), /^Error: File descriptor named 'fd-mig' has not been found$/);
  assert.equal(m.take(1, "fd-mig"), 5);
  assert.throws(() => m.closefd(1, "fd-mig"), /^Error: File descriptor named 'fd-mig' not found$/);
  m.getfd(1, "x", 6);
  m.getfd(1, "x", 5);
  assert.deepEqual(closed, [6], "a reused name closes the descriptor it had");
  m.clientGone(1);
  assert.deepEqual(closed, [6, 5], "a connection that goes takes its named descriptors along");
  assert.throws(() => m.getfd(1, "1st", 7), /cannot start with a digit/);
});

Deno.test("monitor fds: add-fd fills sets, remove-fd empties them, with QEMU's errors", () => {
  const { host, closed } = fakeHost({ 5: [1, false], 6: [1, true], 7: [0, false] });
  const m = new MonitorFds(host);
  assert.deepEqual(m.addFd(5, 1), { "fdset-id": 1, fd: 5 });
  assert.deepEqual(m.addFd(6, 1, "direct"), { "fdset-id": 1, fd: 6 });
  assert.deepEqual(m.addFd(7), { "fdset-id": 0, fd: 7 }, "no id: the lowest unused");
  assert.deepEqual(m.query(), [
    { "fdset-id": 0, fds: [{ fd: 7 }] },
    { "fdset-id": 1, fds: [{ fd: 5 }, { fd: 6, opaque: "direct" }] },
  ]);
  assert.throws(() => m.removeFd(7), /^Error: File descriptor named 'fdset-id:7' not found$/);
  assert.throws(() => m.removeFd(1, 99), /^Error: File descriptor named 'fdset-id:1, fd:99' not found$/);
  m.removeFd(1, 6);
  m.removeFd(1);
  m.removeFd(0);
  assert.deepEqual(m.query(), []);
  assert.deepEqual(closed, [6, 5, 7]);
});

Deno.test("monitor fds: /dev/fdset/N opens a dup of the descriptor whose access mode and O_DIRECT match", () => {
  const { host } = fakeHost({ 5: [1, false], 6: [1, true], 7: [0, false] });
  const m = new MonitorFds(host);
  m.addFd(5, 1);
  m.addFd(6, 1);
  const plain = m.open("/dev/fdset/1", fileFlags(true));
  assert.deepEqual([host.accessMode(plain), host.isDirect(plain)], [1, false]);
  const direct = m.open("/dev/fdset/1", fileFlags(true, true));
  assert.deepEqual([host.accessMode(direct), host.isDirect(direct)], [1, true]);
  assert.notEqual(plain, 5, "a duplicate, never the set's own descriptor");
  assert.throws(
    () => m.open("/dev/fdset/1", fileFlags(false)),
    /^Error: Failed to find file descriptor with matching flags=0x0$/,
  );
  assert.throws(
    () => m.check("/dev/fdset/2", fileFlags(true)),
    /^Error: Failed to find fdset \/dev\/fdset\/2$/,
  );
  assert.equal(fileFlags(true), 0x41, "O_CREAT|O_WRONLY, as QEMU's error message shows");
});
