import assert from "node:assert/strict";
import { createObject, type TlsCredsX509 } from "../crypto/tls_creds.ts";
import { makeX509Credentials } from "../testing/tls_certs.ts";
import { memoryLinkPair } from "./link.ts";
import { nodeTls } from "./tls.ts";

async function withCreds<T>(
  spec: { serverName: string; clientName: string | null },
  fn: (dir: string) => Promise<T>,
) {
  const dir = await Deno.makeTempDir();
  try {
    await makeX509Credentials(`${dir}/tls`, spec);
    return await fn(`${dir}/tls`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function creds(dir: string, endpoint: "client" | "server", verifyPeer = true): TlsCredsX509 {
  const o = createObject({
    "qom-type": "tls-creds-x509",
    id: endpoint,
    endpoint,
    dir,
    "verify-peer": verifyPeer,
    "sanity-check": true,
  });
  if (o.type !== "tls-creds-x509") throw new Error("not x509");
  return o;
}

Deno.test("tls: node:tls over an in-memory link, both ends checked, bytes both ways", async () => {
  await withCreds({ serverName: "127.0.0.1", clientName: "ACME QEMU Client" }, async (dir) => {
    const [a, b] = memoryLinkPair();
    const authz = { type: "authz-simple" as const, id: "z", identity: "CN=ACME QEMU Client" };
    const [cl, sv] = await Promise.all([
      nodeTls.client(a, { creds: creds(dir, "client"), hostname: "127.0.0.1" }),
      nodeTls.server(b, { creds: creds(dir, "server"), authz }),
    ]);
    const data = new Uint8Array(300_000).map((_, i) => i * 7);
    const got = new Uint8Array(data.length);
    const reading = (async () => {
      let n = 0;
      while (n < got.length) n += (await sv.read(got.subarray(n))) ?? 0;
    })();
    await cl.write(data);
    await reading;
    assert.deepEqual(got, data);
    cl.close();
    sv.close();
  });
});

Deno.test("tls: what each end refuses, with QEMU's messages", async () => {
  await withCreds({ serverName: "127.0.0.1", clientName: "ACME Hostile Client" }, async (dir) => {
    const authz = { type: "authz-simple" as const, id: "z", identity: "CN=ACME QEMU Client" };
    const run = async (hostname: string | null, withAuthz: boolean) => {
      const [a, b] = memoryLinkPair();
      return await Promise.allSettled([
        nodeTls.client(a, { creds: creds(dir, "client"), hostname }),
        nodeTls.server(b, { creds: creds(dir, "server"), authz: withAuthz ? authz : null }),
      ]).then((r) => {
        for (const x of r) if (x.status === "fulfilled") x.value.close();
        return r.map((x) => (x.status === "rejected" ? (x.reason as Error).message : "ok"));
      });
    };
    const [c1, s1] = await run("127.0.0.1", true);
    assert.match(s1, /^TLS x509 authz check for CN=ACME Hostile Client is denied$/);
    assert.notEqual(c1, "ok", "the client sees its session go");
    const [c2] = await run("10.0.0.1", false);
    assert.equal(c2, "Certificate does not match the hostname 10.0.0.1");
    const [c3] = await run(null, false);
    assert.equal(c3, "No hostname for certificate validation");
  });
});

// Regression (found by the engine-to-qemu pair): a peer that closes the transport under a finished session
// (QEMU's server refusing a TLS 1.3 client's certificate after the client's handshake) fails the writes
// that follow; node's TLS socket does not pass its transport's errors on, and every write went on as done.
Deno.test("tls: writes after the transport under the session failed are refused, not taken as done", async () => {
  await withCreds({ serverName: "127.0.0.1", clientName: "ACME QEMU Client" }, async (dir) => {
    const [a, b] = memoryLinkPair();
    const [cl, sv] = await Promise.all([
      nodeTls.client(a, { creds: creds(dir, "client"), hostname: "127.0.0.1" }),
      nodeTls.server(b, { creds: creds(dir, "server"), authz: null }),
    ]);
    sv.close();
    b.close();
    const chunk = new Uint8Array(65536);
    let refused: unknown = null;
    for (let i = 0; i < 64 && refused === null; i++) await cl.write(chunk).catch((e) => (refused = e));
    cl.close();
    assert.ok(refused instanceof Error, "64 writes of 64 KiB into a closed transport all went through");
  });
});
