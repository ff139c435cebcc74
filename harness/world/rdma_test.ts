import assert from "node:assert/strict";
import { netdevAddress, rdmaAddress, rdmaNetdevs } from "./rdma.ts";

Deno.test("rdma: the active links' devices, and their addresses, from the tools' output", () => {
  const links = "link rxe0/1 state ACTIVE physical_state LINK_UP netdev eth0 \n" +
    "link mlx5_0/1 state DOWN physical_state DISABLED netdev ens1f0 \n";
  assert.deepEqual(rdmaNetdevs(links), ["eth0"]);
  assert.deepEqual(rdmaNetdevs(""), []);
  const v4 = "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever";
  assert.equal(netdevAddress(v4, false), "192.0.2.2");
  assert.equal(netdevAddress(v4, true), null);
  const v6 =
    "4: eth0    inet6 fe80::1/64 scope link \\ valid\n4: eth0    inet6 fd00::2/64 scope global nodad";
  assert.equal(netdevAddress(v6, true), "fd00::2");
});

Deno.test("rdma: this host says where a link is, or why there is none", () => {
  const r = rdmaAddress(false);
  if ("none" in r) assert.match(r.none, /RDMA|ulimit|address/);
  else assert.match(r.addr, /^\d+\.\d+\.\d+\.\d+$/);
});
