/** The words a side's unexpected exit is reported with: status, signal, and what it last said. */
import assert from "node:assert/strict";
import { exitWords } from "./framework.ts";

Deno.test("exitWords: a crash at shutdown names its status, its signal and the side's last stderr lines", () => {
  const abort: Deno.CommandStatus = { success: false, code: 134, signal: "SIGABRT" };
  const stderr =
    "qemu: warning: x\n\n../util/qemu-thread-posix.c:92: qemu_mutex_lock_impl: Assertion failed\n";
  assert.equal(
    exitWords({ stderr }, abort),
    "status 134, SIGABRT: qemu: warning: x | ../util/qemu-thread-posix.c:92: qemu_mutex_lock_impl: Assertion failed",
  );
  assert.equal(exitWords({ stderr: "" }, { success: false, code: 1, signal: null }), "status 1");
});
