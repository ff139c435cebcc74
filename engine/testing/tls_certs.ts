/**
 * Credentials for one run, in upstream's layout (tests/unit/crypto-tls-x509-helpers.c): one directory
 * holding `ca-cert.pem`, `server-cert.pem`/`server-key.pem` and, unless the client is anonymous,
 * `client-cert.pem`/`client-key.pem`, all signed by one CA (CN qemu-CA), valid from now for a day, files
 * 0600. The `openssl` command makes them (P-256 keys: fast, and QEMU's GnuTLS takes them).
 */
export interface X509Spec {
  /**
   * The server certificate's name: an IP address (CN and SAN IP) or a DNS name (CN and SAN DNS); "":
   * none, an empty subject and no SAN (upstream's no-hostname case).
   */
  serverName: string;
  /** The client certificate's CN (upstream: "ACME QEMU Client", or "ACME Hostile Client"); null: none. */
  clientName: string | null;
  /** The client certificate signed by a CA of its own (same name, other key), not the one both trust. */
  clientForeignCa?: boolean;
}

const EXTENSIONS = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = critical,serverAuth
subjectAltName = @server_san
[server_anon]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = critical,serverAuth
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = critical,clientAuth
`;

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** Writes the credentials into `dir` (created 0700); returns `dir`. */
export async function makeX509Credentials(dir: string, spec: X509Spec): Promise<string> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const ip = /^[0-9.]+$/.test(spec.serverName);
  const anon = spec.serverName === "";
  const san = anon ? "" : `[server_san]\n${ip ? "IP" : "DNS"}.1 = ${spec.serverName}\n`;
  await Deno.writeTextFile(`${dir}/x509.cnf`, EXTENSIONS + san, { mode: 0o600 });
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const conf = ["-config", "x509.cnf"];
  const ca = (name: string) =>
    openssl(dir, "req", "-x509", ...key, "-keyout", `${name}-key.pem`, "-out", `${name}-cert.pem`, ...[
      "-subj",
      "/CN=qemu-CA",
      "-days",
      "1",
      ...conf,
      "-extensions",
      "ca",
    ]);
  const leaf = async (name: string, cn: string, ext: string, signer = "ca") => {
    const csr = `${name}.csr`;
    await openssl(
      dir,
      "req",
      "-new",
      ...key,
      "-keyout",
      `${name}-key.pem`,
      "-out",
      csr,
      "-subj",
      cn === "" ? "/" : `/CN=${cn}`,
      ...conf,
    );
    const by = ["-CA", `${signer}-cert.pem`, "-CAkey", `${signer}-key.pem`, "-CAcreateserial"];
    const ext1 = ["-days", "1", "-extfile", "x509.cnf", "-extensions", ext];
    await openssl(dir, "x509", "-req", "-in", csr, ...by, ...ext1, "-out", `${name}-cert.pem`);
    await Deno.remove(`${dir}/${csr}`);
  };
  await ca("ca");
  await leaf("server", spec.serverName, anon ? "server_anon" : "server");
  if (spec.clientName !== null) {
    // A foreign client: the same CA name, another key; the destination trusts only ca-cert.pem.
    if (spec.clientForeignCa) await ca("foreign-ca");
    await leaf("client", spec.clientName, "client", spec.clientForeignCa ? "foreign-ca" : "ca");
  }
  for await (const e of Deno.readDir(dir)) await Deno.chmod(`${dir}/${e.name}`, 0o600);
  return dir;
}

/** Upstream's PSK key (tests/unit/crypto-tls-psk-helpers.c) and the one its mismatch case uses. */
export const PSK_KEYS = { match: "009d5638c40fde0c", mismatch: "10ffa6a2c42f0388" } as const;

/** Writes `dir/keys.psk` (dir created 0700, the file 0600) with `username:key`; returns `dir`. */
export async function makePskCredentials(dir: string, key: string, username = "qemu"): Promise<string> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(`${dir}/keys.psk`, `${username}:${key}\n`, { mode: 0o600 });
  return dir;
}
