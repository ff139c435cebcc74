/**
 * Bug: only the connecting side of a TCP migration disabled Nagle's algorithm. The destination's
 * accepted socket kept it, so its small messages (return path, the four-byte COLO replies) sat behind
 * delayed ACKs: every COLO checkpoint over TCP took ~45 ms even with nothing to send (6 ms after the fix,
 * deno task bench). Both ends must set TCP_NODELAY.
 */
import assert from "node:assert/strict";
import { socketConnect, socketListen } from "./socket.ts";

Deno.test("regression: accepted TCP migration connections disable Nagle (TCP_NODELAY)", async () => {
  const calls: boolean[] = [];
  // The TCP connection class is not a global: take its prototype from a throwaway connection.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [c1, c2] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: probe.addr.port }),
    probe.accept(),
  ]);
  const proto = Object.getPrototypeOf(c1) as { setNoDelay(v?: boolean): void };
  c1.close();
  c2.close();
  probe.close();
  const original = proto.setNoDelay;
  proto.setNoDelay = function (this: unknown, v?: boolean) {
    calls.push(v ?? true);
    return original.call(this, v);
  };
  const listener = socketListen({ transport: "tcp", host: "127.0.0.1", port: 0 });
  try {
    const port = Number((listener.addresses[0] as { port: string }).port);
    const [client, server] = await Promise.all([
      socketConnect({ transport: "tcp", host: "127.0.0.1", port }),
      listener.accept(),
    ]);
    client.close();
    server?.close();
    assert.deepEqual(calls, [true, true], "both the connecting and the accepting side set TCP_NODELAY");
  } finally {
    proto.setNoDelay = original;
    listener.close();
  }
});
