/**
 * Bug: when the peer reset the connection (it closed with unread data in its buffer), the destination's
 * error-desc was the bare socket error ("Connection reset by peer (os error 104)"), with no stream offset
 * and nothing about what was being read. A reset is a stream error like a truncation.
 */
import assert from "node:assert/strict";
import { QEMUFileReader, StreamError } from "./qemu_file.ts";
import type { Link } from "./transport/link.ts";

Deno.test("regression: a link read error becomes a StreamError naming the field and offset", async () => {
  let calls = 0;
  const link: Link = {
    description: "unix:/tmp/migsocket",
    read(p: Uint8Array) {
      if (calls++ === 0) {
        p.set([0x51, 0x45, 0x56, 0x4d, 0, 0]);
        return Promise.resolve(6);
      }
      return Promise.reject(new Error("Connection reset by peer (os error 104)"));
    },
    write: () => Promise.resolve(),
    close() {},
  };
  const r = new QEMUFileReader(link);
  await r.need(4, "file header");
  r.skip(4);
  await assert.rejects(r.need(4, "file version"), (e: unknown) => {
    assert.ok(e instanceof StreamError);
    assert.equal(
      e.message,
      "unix:/tmp/migsocket: Connection reset by peer (os error 104) while reading file version (at stream offset 6)",
    );
    return true;
  });
});
