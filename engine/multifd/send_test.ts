/** The multifd source's channel setup. */
import assert from "node:assert/strict";
import "./methods.ts";
import { memoryLinkPair } from "../transport/link.ts";
import type { Link } from "../transport/link.ts";
import { multifdMethod } from "./compression.ts";
import { MULTIFD_INIT_SIZE } from "./packet.ts";
import { MultifdSendState } from "./send.ts";

const UUID = new Uint8Array(16).fill(7);

// Regression (found by the engine-to-qemu pair over TLS): QEMU's destination reads a channel's initial
// packet on its main loop as the channel arrives, so the next channel opens only once the one before has
// greeted; a source that greets after all its channels are open never gets them open.
Deno.test("multifd send: each channel sends its initial packet as soon as it is open", async () => {
  const peers: Link[] = [];
  const links: Link[] = [];
  const greeted = Array.from({ length: 3 }, () => Promise.withResolvers<void>());
  let opened = 0;
  const readInit = async (peer: Link, i: number) => {
    const got = new Uint8Array(MULTIFD_INIT_SIZE);
    for (let n = 0; n < got.length;) {
      const r = await peer.read(got.subarray(n));
      if (r === null) throw new Error(`channel ${i} ended before its initial packet`);
      n += r;
    }
  };
  const open = async (): Promise<Link> => {
    const i = opened++;
    // The destination takes channel i only after it read channel i-1's initial packet.
    if (i > 0) await greeted[i - 1].promise;
    const [a, b] = memoryLinkPair(1 << 16, `multifd${i}`);
    links.push(a);
    peers.push(b);
    readInit(b, i).then(greeted[i].resolve, greeted[i].reject);
    return a;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const giveUp = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("channels still not open after 5 s: greeted too late")), 5000);
  });
  try {
    const m = await Promise.race([
      MultifdSendState.open(3, open, {
        uuid: UUID,
        method: multifdMethod("none"),
        level: 1,
        detectZeroPages: false,
      }),
      giveUp,
    ]);
    assert.equal(opened, 3);
    m.close();
  } finally {
    clearTimeout(timer);
    for (const l of [...links, ...peers]) l.close();
  }
});

Deno.test("multifd send: a channel that cannot be opened fails the setup, naming it; the others are closed", async () => {
  let opened = 0;
  const links: Link[] = [];
  const open = (): Promise<Link> => {
    const i = opened++;
    if (i === 1) return Promise.reject(new Error("Connection refused"));
    const [a, b] = memoryLinkPair(1 << 16);
    links.push(a, b);
    return Promise.resolve(a);
  };
  await assert.rejects(
    MultifdSendState.open(3, open, {
      uuid: UUID,
      method: multifdMethod("none"),
      level: 1,
      detectZeroPages: false,
    }),
    /^Error: multifd: failed to connect channel 1: Connection refused$/,
  );
  for (const l of links) l.close();
});
