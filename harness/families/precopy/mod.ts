/**
 * The precopy family (upstream's precopy-tests.c): test_precopy_common, live or with the source stopped,
 * over unix or TCP, with faults and older device releases; and converge-after-raise, a live migration
 * that cannot converge until its bandwidth is raised. The multifd, XBZRLE, bad-stream and cross-version
 * tables are precopy cases too.
 */
import { isWireFault } from "../../wire_proxy.ts";
import type { ReleaseName } from "../../../engine/testing/releases.ts";
import { defineFlow } from "../../family.ts";
import { isRelease } from "../../../engine/testing/releases.ts";
import type { LackedField } from "../../../engine/testing/releases.ts";
import {
  faultProblems,
  OUTCOME_FIELDS,
  outcomeProblems,
  SOCKET_FIELDS,
  socketProblems,
  xbzrlePagesProblems,
} from "../../validate.ts";
import type { Side } from "../../world/world.ts";
import type { AutoConvergeCase, ConvergeAfterRaiseCase, PrecopyCase } from "./case.ts";
import { autoConvergeFlow, convergeAfterRaiseFlow, precopyFlow } from "./flow.ts";

export const precopy = defineFlow<PrecopyCase>({
  flow: "precopy",
  fields: {
    ...SOCKET_FIELDS,
    ...OUTCOME_FIELDS,
    flow: true,
    live: true,
    iterations: true,
    migrateChannels: true,
    migrateAddress: true,
    fillRandom: true,
    writeOnce: true,
    fault: true,
    dstFaults: true,
    expectXbzrlePages: true,
    release: true,
    holdSwitchoverAck: true,
    contSourceAfter: true,
    maxRamSentMiB: true,
    setDstWhileLoading: true,
  },
  problems(c, bad) {
    socketProblems(c, bad);
    outcomeProblems(c, bad);
    xbzrlePagesProblems(c, bad);
    if (c.iterations !== undefined && !c.live) bad("iterations", "only a live case iterates");
    if (c.fillRandom && c.live) bad("fillRandom", "fills the stopped source: not with live");
    if (c.migrateAddress && c.expect !== "qmp-error") {
      bad("migrateAddress", "both forms of the address, or neither, must be refused: expect qmp-error");
    }
    if (c.contSourceAfter && (c.expect ?? "succeed") !== "succeed") {
      bad("contSourceAfter", "continues the source after a completed migration: expect succeed");
    }
    if (c.writeOnce && !c.live) {
      bad("writeOnce", "writes the running guest's RAM during the migration: live only");
    }
    if (c.writeOnce && c.workload?.kind !== "idle") {
      bad("writeOnce", "needs the idle workload (a guest that writes nothing after the write)");
    }
    if (c.setDstWhileLoading && !c.live) {
      bad("setDstWhileLoading", "needs a live migration, held while it is set");
    }
    if (c.maxRamSentMiB !== undefined && (c.expect ?? "succeed") !== "succeed") {
      bad("maxRamSentMiB", "bounds what a completed migration sent: expect succeed");
    }
    if (c.fault) faultProblems(c, c.fault, "fault", "src", bad);
    for (const f of c.dstFaults ?? []) faultProblems(c, f, "dstFaults", "dst", bad);
    for (const side of ["src", "dst"] as const) {
      const r = c.release?.[side];
      if (r !== undefined && !isRelease(r)) bad(`release.${side}`, `unknown release '${r}'`);
    }
    if (c.release?.src !== undefined && c.release.src === c.release.dst) {
      bad("release", "both sides run the same release: nothing crosses a version");
    }
  },
  needs: (c) => ({
    // The ack has a place on the wire too: the return path's RP_SWITCHOVER_ACK, held by the proxy.
    ...(c.holdSwitchoverAck ? { heldAt: "holding the destination's switchover ack", heldOnWire: true } : {}),
    ...(c.transport === "rdma"
      ? {
        notModelled: "the rdma: transport needs an RDMA link (InfiniBand, RoCE or soft-RoCE) and QEMU's " +
          "CONFIG_RDMA: the model has no RDMA transport (it refuses rdma: URIs); a QEMU with RDMA on a host " +
          "with a link runs the case",
        rdmaLink: c.ipv6 ? "IPv6" as const : "IPv4" as const,
      }
      : {}),
    // A byte fault every stream has a place for can go on the wire (real QEMU's way); others are the model's.
    faults: [
      ...(c.fault !== undefined && !isWireFault(c.fault, "src") ? [c.fault.kind] : []),
      ...(c.dstFaults ?? []).filter((f) => !isWireFault(f, "dst")).map((f) => f.kind),
    ],
    dstFaults: (c.dstFaults ?? []).filter((f) => !isWireFault(f, "dst")).map((f) => f.kind),
    olderRelease: c.release !== undefined,
    qemu: c.migrateChannels || c.migrateAddress
      ? [{ side: "src", kind: "migrate-arg", name: "channels" }]
      : [],
  }),
  socket: (c) => c,
  async setupSource(p, c) {
    if (c.release?.src) p.sourceLacks = await applyRelease(p.src, c.release.src);
  },
  async setupTarget(p, c) {
    if (c.release?.dst) await applyRelease(p.dst, c.release.dst);
    // What the target holds of its own, for the fields an older source will not send.
    if (c.release?.src) p.targetBefore = await p.dst.deviceState();
  },
  run: precopyFlow,
});

export const convergeAfterRaise = defineFlow<ConvergeAfterRaiseCase>({
  flow: "converge-after-raise",
  fields: {
    ...SOCKET_FIELDS,
    flow: true,
    iterations: true,
    dstFaults: true,
    expectDirtyPagesRate: true,
    expectXbzrlePages: true,
  },
  problems(c, bad) {
    socketProblems(c, bad);
    xbzrlePagesProblems(c, bad);
    for (const f of c.dstFaults ?? []) faultProblems(c, f, "dstFaults", "dst", bad);
  },
  needs: (c) => {
    const kinds = (c.dstFaults ?? []).filter((f) => !isWireFault(f, "dst")).map((f) => f.kind);
    return { faults: kinds, dstFaults: kinds };
  },
  socket: (c) => c,
  run: convergeAfterRaiseFlow,
});

export const autoConverge = defineFlow<AutoConvergeCase>({
  flow: "auto-converge",
  fields: { ...SOCKET_FIELDS, flow: true },
  problems(c, bad) {
    socketProblems(c, bad);
  },
  needs: () => ({}),
  socket: (c) => c,
  run: autoConvergeFlow,
});

/** x-test-release: the side runs an older release of the devices; the fields that release lacks. */
async function applyRelease(side: Side, name: ReleaseName): Promise<LackedField[]> {
  return (await side.qmp.execute<{ lacks: LackedField[] }>("x-test-release", { name })).lacks;
}

/** The precopy family's flows (one entry of the registry). */
export const PRECOPY = [precopy, convergeAfterRaise, autoConverge] as const;
