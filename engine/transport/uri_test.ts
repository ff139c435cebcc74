import assert from "node:assert/strict";
import { parseMigrationUri, UriError } from "./uri.ts";

function refused(uri: string, message: string | RegExp): void {
  assert.throws(() => parseMigrationUri(uri), (e) => {
    assert.ok(e instanceof UriError, String(e));
    if (typeof message === "string") assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

Deno.test("uri: unix", () => {
  assert.deepEqual(parseMigrationUri("unix:/tmp/mig.sock"), { transport: "unix", path: "/tmp/mig.sock" });
  assert.deepEqual(parseMigrationUri("unix:rel/a:b"), { transport: "unix", path: "rel/a:b" });
  refused("unix:", "Invalid migration URI 'unix:': empty socket path");
});

Deno.test("uri: tcp on loopback", () => {
  assert.deepEqual(parseMigrationUri("tcp:127.0.0.1:4444"), {
    transport: "tcp",
    host: "127.0.0.1",
    port: 4444,
  });
  assert.deepEqual(parseMigrationUri("tcp:localhost:0"), { transport: "tcp", host: "127.0.0.1", port: 0 });
  assert.deepEqual(parseMigrationUri("tcp:[::1]:65535"), { transport: "tcp", host: "[::1]", port: 65535 });
  assert.deepEqual(parseMigrationUri("tcp:::1:80"), { transport: "tcp", host: "::1", port: 80 });
  // Options after the port (",ipv4=on" and the like) do not disturb the port.
  assert.deepEqual(parseMigrationUri("tcp:127.0.0.1:4444,ipv4=on"), {
    transport: "tcp",
    host: "127.0.0.1",
    port: 4444,
  });
});

Deno.test("uri: tcp refuses non-loopback hosts", () => {
  for (const host of ["10.0.0.1", "0.0.0.0", "example.com", "", "127.0.0.2", "[::]"]) {
    refused(`tcp:${host}:4444`, `migtest only uses loopback addresses; '${host}' is not allowed`);
  }
});

Deno.test("uri: tcp bad or missing port", () => {
  refused("tcp:127.0.0.1", "address resolution failed for '127.0.0.1': port is missing");
  for (const port of ["65536", "99999", "abc", "", "-1", "1.5", "0x10", " 80"]) {
    refused(
      `tcp:127.0.0.1:${port}`,
      `address resolution failed for '127.0.0.1:${port}': invalid port '${port}'`,
    );
  }
  // The port is checked before the host.
  refused("tcp:10.0.0.1:x", /invalid port 'x'/);
});

Deno.test("uri: file with offsets", () => {
  assert.deepEqual(parseMigrationUri("file:/tmp/s.mig"), {
    transport: "file",
    path: "/tmp/s.mig",
    offset: 0,
  });
  for (const [text, value] of [["4096", 4096], ["0x1000", 4096], ["0", 0], ["0xABCdef", 0xabcdef]] as const) {
    assert.deepEqual(parseMigrationUri(`file:/tmp/s.mig,offset=${text}`), {
      transport: "file",
      path: "/tmp/s.mig",
      offset: value,
    });
  }
  // Later options win, as QEMU's option parsing does.
  assert.equal((parseMigrationUri("file:/f,offset=1,offset=2") as { offset: number }).offset, 2);
});

Deno.test("uri: file refuses bad offsets and options", () => {
  for (const bad of ["0x20M", "-1", "1.5", "", "4k", "0x", "1e3", "99999999999999999999"]) {
    refused(`file:/tmp/s.mig,offset=${bad}`, `file URI has bad offset ${bad}`);
  }
  refused("file:/tmp/s.mig,size=4", "file URI has an unknown option 'size=4'");
  refused("file:", "Invalid migration URI 'file:': empty file name");
  refused("file:,offset=4", "Invalid migration URI 'file:,offset=4': empty file name");
});

Deno.test("uri: unknown schemes", () => {
  refused("exec:cat > /tmp/x", "unknown migration protocol: exec");
  refused("rdma:127.0.0.1:4444", "unknown migration protocol: rdma");
  refused("vsock:2:1234", "unknown migration protocol: vsock");
  refused("/tmp/plain-path", "unknown migration protocol: /tmp/plain-path");
  refused("", "unknown migration protocol: ");
  // Scheme matching is case-sensitive, as in QEMU's strstart().
  refused("TCP:127.0.0.1:1", "unknown migration protocol: TCP");
});
