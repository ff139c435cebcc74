import assert from "node:assert/strict";
import { makeX509Credentials } from "../testing/tls_certs.ts";
import { createObject } from "./tls_creds.ts";
import { checkClient, checkServer, distinguishedName } from "./tls_session.ts";

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("tls creds: object-add's objects and QEMU's errors", async () => {
  await withDir(async (root) => {
    const dir = await makeX509Credentials(`${root}/a`, { serverName: "127.0.0.1", clientName: null });
    for await (const e of Deno.readDir(dir)) {
      assert.equal((await Deno.stat(`${dir}/${e.name}`)).mode! & 0o777, 0o600, `${e.name} is 0600`);
    }
    const server = createObject({ "qom-type": "tls-creds-x509", id: "s", endpoint: "server", dir });
    assert.ok(server.type === "tls-creds-x509" && server.cert && server.key && server.verifyPeer);
    // No client certificate in the directory: an anonymous client.
    const client = createObject({ "qom-type": "tls-creds-x509", id: "c", endpoint: "client", dir });
    assert.ok(client.type === "tls-creds-x509" && client.cert === null);
    assert.throws(
      () => createObject({ "qom-type": "tls-creds-x509", id: "x", endpoint: "server", dir: `${root}/none` }),
      new RegExp(`^Error: Unable to access credentials ${root}/none/ca-cert.pem: No such file or directory$`),
    );
    assert.throws(
      () => createObject({ "qom-type": "warp", id: "w" }),
      /Parameter 'qom-type' does not accept value 'warp'/,
    );
    assert.throws(
      () => createObject({ "qom-type": "tls-creds-x509", id: "c", endpoint: "middle", dir }),
      /Parameter 'endpoint' does not accept value 'middle'/,
    );
    const authz = createObject({ "qom-type": "authz-simple", id: "z", identity: "CN=ACME QEMU Client" });
    assert.deepEqual(authz, { type: "authz-simple", id: "z", identity: "CN=ACME QEMU Client" });
  });
});

Deno.test("tls session: each check, and what passes it", async () => {
  await withDir(async (root) => {
    const dir = await makeX509Credentials(`${root}/a`, {
      serverName: "qemu.org",
      clientName: "ACME QEMU Client",
    });
    const other = await makeX509Credentials(`${root}/b`, {
      serverName: "127.0.0.1",
      clientName: "ACME QEMU Client",
    });
    const mk = (d: string, endpoint: "client" | "server", verify = true) => {
      const o = createObject({
        "qom-type": "tls-creds-x509",
        id: endpoint,
        endpoint,
        dir: d,
        "verify-peer": verify,
      });
      if (o.type !== "tls-creds-x509") throw new Error("x509");
      return o;
    };
    const client = mk(dir, "client");
    const server = mk(dir, "server");
    const foreign = mk(other, "server");
    assert.equal(checkServer(client, server.cert, "qemu.org"), null);
    assert.equal(
      checkServer(client, server.cert, "127.0.0.1"),
      "Certificate does not match the hostname 127.0.0.1",
    );
    assert.equal(checkServer(client, server.cert, null), "No hostname for certificate validation");
    assert.equal(
      checkServer(client, foreign.cert, "127.0.0.1"),
      "Verify failed: The certificate hasn't got a known issuer.",
    );
    assert.equal(checkServer(mk(dir, "client", false), foreign.cert, "10.9.9.9"), null, "verify-peer off");
    const authz = { type: "authz-simple" as const, id: "z", identity: "CN=ACME QEMU Client" };
    assert.equal(distinguishedName(client.cert!), "CN=ACME QEMU Client");
    assert.equal(checkClient(server, client.cert, authz), null);
    assert.equal(
      checkClient(server, client.cert, { ...authz, identity: "CN=Someone Else" }),
      "TLS x509 authz check for CN=ACME QEMU Client is denied",
    );
    assert.equal(checkClient(server, null, null), "Verify failed: No certificate was found.");
    assert.equal(
      checkClient(server, mk(other, "client").cert, null),
      "Verify failed: The certificate hasn't got a known issuer.",
    );
    assert.equal(
      checkClient(mk(dir, "server", false), null, authz),
      null,
      "verify-peer off: no certificate asked",
    );
  });
});
