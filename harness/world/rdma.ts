/**
 * The host's RDMA link, as upstream's scripts/rdma-migration-helper.sh finds one: `rdma link` lists the
 * links with their network device, and that device's address (IPv4, or a global IPv6 one) is where QEMU's
 * `rdma:` transport listens and connects. QEMU also locks the guest's RAM for RDMA, so upstream skips
 * when `ulimit -l` is below 128 MiB. Read through the tools (Deno reads neither netlink nor /proc).
 */

/** Upstream's least locked-memory limit for an RDMA migration (KiB, as `ulimit -l` says it). */
export const RDMA_MIN_MEMLOCK_KIB = 128 * 1024;

/** The network devices of the active links in `rdma link` output ("link rxe0/1 state ACTIVE ... netdev eth0"). */
export function rdmaNetdevs(linkOutput: string): string[] {
  return [...linkOutput.matchAll(/^link \S+ .*\bstate ACTIVE\b.*\bnetdev (\S+)/gm)].map((m) => m[1]);
}

/** The first address in `ip -o addr show dev X` output of the family asked for (global scope for IPv6). */
export function netdevAddress(ipOutput: string, ipv6: boolean): string | null {
  const re = ipv6 ? /\binet6 ([0-9a-f:]+)\/\d+ scope global\b/ : /\binet (\d+\.\d+\.\d+\.\d+)\/\d+/;
  return re.exec(ipOutput)?.[1] ?? null;
}

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  try {
    const o = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    return { ok: o.success, out: o.success ? text(o.stdout) : text(o.stderr).trim() };
  } catch (e) {
    return { ok: false, out: e instanceof Deno.errors.NotFound ? `${cmd}: not installed` : String(e) };
  }
}

const found = new Map<boolean, { addr: string } | { none: string }>();

/** Where an RDMA migration can listen on this host ("rdma:ADDR:29200"), or why none can (looked up once). */
export function rdmaAddress(ipv6: boolean): { addr: string } | { none: string } {
  let r = found.get(ipv6);
  if (!r) found.set(ipv6, r = lookUp(ipv6));
  return r;
}

function lookUp(ipv6: boolean): { addr: string } | { none: string } {
  const links = run("rdma", ["link", "show"]);
  if (!links.ok) return { none: `this host has no RDMA link ('rdma link': ${links.out})` };
  const devs = rdmaNetdevs(links.out);
  if (!devs.length) {
    return {
      none: "this host has no active RDMA link ('rdma link' lists none; upstream's " +
        "rdma-migration-helper.sh adds a soft-RoCE one where the kernel has rdma_rxe)",
    };
  }
  const limit = run("sh", ["-c", "ulimit -l"]);
  const kib = limit.out.trim() === "unlimited" ? Infinity : Number(limit.out.trim());
  if (!(kib >= RDMA_MIN_MEMLOCK_KIB)) {
    return { none: `QEMU locks guest RAM for RDMA: 'ulimit -l' is ${limit.out.trim()} KiB, under 128 MiB` };
  }
  for (const dev of devs) {
    const a = run("ip", [ipv6 ? "-6" : "-4", "-o", "addr", "show", "dev", dev]);
    const addr = a.ok ? netdevAddress(a.out, ipv6) : null;
    if (addr) return { addr: ipv6 ? `[${addr}]` : addr };
  }
  return {
    none: `no ${ipv6 ? "global IPv6" : "IPv4"} address on the RDMA link's device (${devs.join(", ")})`,
  };
}
