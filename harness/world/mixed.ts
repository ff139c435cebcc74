/**
 * A pair of two kinds: the model (an engine process) as the source and real QEMU as the destination
 * (`--backend engine-to-qemu`). The model's stream meets QEMU's own loader live: every page record,
 * multifd packet, compressed page, XBZRLE delta and section header the model writes must load in QEMU,
 * and the RAM QEMU ends with must equal the model's, page by page. A fault the model's source injects
 * (x-test-inject-fault) then meets QEMU's checks, and the case's `qemuError` is what QEMU must say.
 *
 * The model migrates as the QEMU machine it talks to (fixtures/machines.ts `qemu:TYPE:BYTES`): QEMU's
 * machine type in the configuration section, one pc.ram of QEMU's size, and of its devices only those
 * QEMU's machine has in the same format (the run state, the serial port). So the destination's RAM is
 * checked, its devices keep their reset state, and its guest is not run: the model's guest is no x86
 * code (QEMU's vCPU and devices start from reset).
 */
import { qemuPeerMachine } from "../../fixtures/machines.ts";
import { type RamSource, withoutPages } from "../check/ram_equal.ts";
import type { AnyCase } from "../case.ts";
import { engineWorld } from "./engine.ts";
import { knownQemuBug, QEMU_BUGS } from "./qemu_bugs.ts";
import {
  accelsFor,
  effectiveAccel,
  modelOnlyReason,
  qemuNeeds,
  qemuRamKiB,
  type QemuSetup,
  qemuSidesCannotRun,
  qemuWorld,
} from "./qemu.ts";
import { describeProbe } from "./qemu_probe.ts";
import { ramblocks, twinDevices } from "./qemu_machine.ts";
import type { VmdescDevice } from "../../engine/vmdesc.ts";
import { waitFor } from "../../engine/wait.ts";
import type { CaseNeeds, DeviceState, QemuNeed, Side, SideSpec, Unavailable, World } from "./world.ts";

/**
 * Guest-physical [0xa0000, 0x100000) of a pc machine is no RAM on QEMU (the VGA window, the ROMs the BIOS
 * shadows there), while the model's pc.ram is flat: QEMU's pmemsave reads something else there, so
 * neither side's pages in that range are compared.
 */
const PC_HOLE: Map<string, Uint8Array> = (() => {
  const bits = new Uint8Array(0x100000 / 4096 / 8);
  for (let p = 0xa0000 / 4096; p < 0x100000 / 4096; p++) bits[p >>> 3] |= 1 << (p & 7);
  return new Map([["pc.ram", bits]]);
})();

const NOT_X86 = "it received the model's guest, which is no x86 code, and none of the model's vCPU or " +
  "device state (QEMU starts them from reset)";

const DEVICES_APART = "the model and QEMU are different machines: of QEMU's devices the model sends only " +
  "the run state and the serial port (QEMU's loading them is their check), the rest stay at reset";

/** QEMU's bugs a QEMU destination shows whoever its source is. */
const DESTINATION_BUGS = QEMU_BUGS.filter((b) => b.side !== "src" && !b.peer && !b.destinationShowsOnRun);

/**
 * Guest-physical RAM under QEMU's name for it: the block that holds it (`main`: pc.ram, or a memory
 * backend's id, as the model names it) as "pc.ram", what QEMU's pmemsave is compared as; the model's other
 * blocks are QEMU's ROMs, which guest-physical reads do not reach.
 */
function asPcRam(source: RamSource, main: string): RamSource {
  return {
    name: source.name,
    async digests() {
      const d = await source.digests();
      return {
        ...d,
        blocks: d.blocks.flatMap((b) => b.idstr === main ? [{ ...b, idstr: "pc.ram" }] : []),
      };
    },
    readPage: source.readPage &&
      ((idstr, offset, size) => source.readPage!(idstr === "pc.ram" ? main : idstr, offset, size)),
  };
}

/** `side`, with what a pair of two kinds changes about it. */
function mixedSide(
  side: Side,
  overrides: {
    foreignGuest?: string;
    deviceState?: () => Promise<DeviceState | Unavailable>;
    /** The model's block that holds guest-physical RAM (absent: a QEMU side). */
    mainBlock?: string;
  },
): Side {
  const ram = () =>
    withoutPages(overrides.mainBlock ? asPcRam(side.ram(), overrides.mainBlock) : side.ram(), PC_HOLE);
  return new Proxy(side, {
    get(target, key) {
      if (key === "ram") return ram;
      if (key === "foreignGuest" && overrides.foreignGuest) return overrides.foreignGuest;
      if (key === "deviceState" && overrides.deviceState) return overrides.deviceState;
      const v = Reflect.get(target, key, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** What a model source with a QEMU destination cannot do, or null (the model's own limits aside). */
export function engineToQemuCannotRun(
  c: AnyCase,
  needs: CaseNeeds,
  setup: QemuSetup | null,
): string | null {
  if (needs.coloPair) {
    return "COLO between the model and QEMU: the secondary runs the primary's guest between checkpoints, " +
      "and the model's guest is no x86 code";
  }
  const caps = [
    ...(c.caps ?? []),
    ...(c.srcCaps ?? []),
    ...(c.dstCaps ?? []),
    ...(needs.qemu ?? []).flatMap((n) => n.kind === "capability" ? [n.name] : []),
  ];
  if (caps.includes("postcopy-ram")) {
    return "postcopy runs the guest on the destination before its RAM is all there, and the model's guest " +
      "is no x86 code for QEMU to run";
  }
  if (c.srcParams?.mode !== undefined || c.dstParams?.mode !== undefined) {
    return "a migration mode (cpr) hands the source's own process state on: between the model and QEMU " +
      "there is none in common";
  }
  if (needs.heldAt && !needs.heldOnWire) {
    return `${needs.heldAt} needs a side held at that moment: breakpoints are the model's, and one side is QEMU`;
  }
  if (needs.faults?.includes("multifd-missing-channel")) {
    return "QEMU's destination waits for every multifd channel the source announced, with no limit (the " +
      "model's gives up after 5 s: engine/incoming.ts), so the case's verdict is the model's own";
  }
  if (needs.faults?.includes("newer-subsection-version")) {
    return "the model's newer subsection is its serial's serial/tx, which QEMU's serial does not have: QEMU " +
      "refuses it as unknown ('Failed to load serial:state'), so no newer version is what it meets";
  }
  if (needs.dstFaults?.length) {
    return `a fault the destination makes (${needs.dstFaults.join(", ")}): the destination is QEMU, which ` +
      "has no x-test-inject-fault";
  }
  if (c.defects?.dst?.length) return "a known defect of the model's destination: the destination is QEMU";
  if (needs.olderRelease) {
    return "older releases of the model's devices: QEMU's devices are not the model's (an older QEMU is " +
      "QTEST_QEMU_BINARY_DST)";
  }
  if (needs.modelCounters) return `${needs.modelCounters}: counters the model keeps, and QEMU is one side`;
  // What the destination's QEMU must have: its program image (for the workload's kind), its binary's
  // capabilities, parameters and transports, its accelerator and machine.
  const dstOnly = modelOnlyReason({ ...c, defects: undefined, vcpu: undefined, dstVcpu: undefined }, {
    ...needs,
    faults: [],
    guestControl: false,
  });
  if (dstOnly) return dstOnly;
  // The model's source stands for a QEMU the destination's version can migrate from: what the case asks
  // of the source that shapes the stream (a capability both ends must speak, a compression method, multifd
  // zero pages) that version must know too (found: multifd zero pages into QEMU 7.2, which drops them).
  const asDestination = qemuNeeds(c, needs).flatMap((n) =>
    n.side === "dst" ? [n] : shapesTheStream(n, c) ? [{ ...n, side: "dst" as const }] : []
  );
  return qemuSidesCannotRun(c, needs, setup, asDestination, ["dst"]);
}

/**
 * A source need its destination must meet as well. Not QMP-only ones (the `channels` argument, a status)
 * nor parameters a newer source sends the old way for an old machine type (zero-page-detection legacy or
 * none, as hw_compat_8_2 defaults it).
 */
function shapesTheStream(n: QemuNeed, c: AnyCase): boolean {
  switch (n.kind) {
    case "capability":
    case "capability-set":
    case "compression":
      return true;
    case "parameter":
      return n.name === "zero-page-detection" && c.srcParams?.["zero-page-detection"] === "multifd";
    default:
      return false;
  }
}

/** The model as the source, QEMU as the destination. */
export function createEngineToQemuWorld(
  engine: World = engineWorld,
  qemu: World & { readonly setup: QemuSetup | null } = qemuWorld,
): World {
  return {
    name: "engine-to-qemu",
    // The destination's faults (a multifd channel's delay) go on the wire; the model's source injects its own.
    wireFaults: true,
    qemuSides: { src: false, dst: true },
    prepare: () => qemu.prepare!(),
    cannotRun: (c, needs) => engine.cannotRun(c, needs) ?? engineToQemuCannotRun(c, needs, qemu.setup),
    knownBug(c, needs) {
      const setup = qemu.setup;
      if (!setup) return null;
      // QEMU's destination bugs (no source's, none that needs a QEMU peer): the destination's own probe
      // stands for both sides.
      const machine = typeof setup.machine === "string" ? setup.machine : undefined;
      return knownQemuBug(c, {
        src: setup.dst,
        dst: setup.dst,
        accel: effectiveAccel(accelsFor(needs, setup), setup.dst),
        machine,
      }, DESTINATION_BUGS);
    },
    async spawn(spec: SideSpec): Promise<Side> {
      if (!qemu.setup) await qemu.prepare!();
      const setup = qemu.setup!;
      if (spec.name === "target") {
        const side = await qemu.spawn(spec);
        return mixedSide(side, {
          foreignGuest: NOT_X86,
          deviceState: () => Promise.resolve({ unavailable: DEVICES_APART }),
        });
      }
      const side = await engine.spawn({
        ...spec,
        machine: qemuPeerMachine(machineType(setup), qemuRamKiB(spec.machine) * 1024),
      });
      return mixedSide(side, {
        deviceState: () => Promise.resolve({ unavailable: DEVICES_APART }),
        mainBlock: spec.memoryBackend?.id ?? "pc.ram",
      });
    },
  };
}

/** The machine type the destination's QEMU reports in its configuration section (an alias resolved). */
function machineType(setup: QemuSetup, side: "src" | "dst" = "dst"): string {
  if (typeof setup.machine !== "string") throw new Error(setup.machine.none);
  const name = setup.machine;
  const m = setup[side].machines.find((m) => m.name === name || m.alias === name);
  if (!m) throw new Error(`${describeProbe(setup[side])} has no machine type '${name}'`);
  return m.name;
}

export const engineToQemuWorld = createEngineToQemuWorld();

/** What a QEMU source with a model destination cannot do, or null (the model's own limits aside). */
export function qemuToEngineCannotRun(
  c: AnyCase,
  needs: CaseNeeds,
  setup: QemuSetup | null,
): string | null {
  if (needs.coloPair) {
    return "COLO between QEMU and the model: the secondary runs the primary's guest between checkpoints, " +
      "and QEMU's guest is x86 code the model's vCPU does not run";
  }
  if (capsOf(c, needs).includes("postcopy-ram")) {
    return "postcopy runs the guest on the destination before its RAM is all there, and QEMU's guest is " +
      "x86 code the model's vCPU does not run";
  }
  if (c.srcParams?.mode !== undefined || c.dstParams?.mode !== undefined) {
    return "a migration mode (cpr) hands the source's own process state on: between QEMU and the model " +
      "there is none in common";
  }
  const dstKinds = new Set(needs.dstFaults ?? []);
  const srcFaults = (needs.faults ?? []).filter((k) => !dstKinds.has(k));
  if (needs.olderRelease) {
    return "older releases of the model's devices: the model's destination loads QEMU's devices as QEMU " +
      "describes them (an older QEMU is QTEST_QEMU_BINARY_SRC)";
  }
  if (needs.modelCounters) return `${needs.modelCounters}: counters the model keeps, and QEMU is one side`;
  // What the source's QEMU must have and do: a program for the workload, no model-only knob of the source.
  const srcOnly = modelOnlyReason({
    ...c,
    defects: c.defects?.src ? c.defects : undefined,
    dstVcpu: undefined,
  }, {
    ...needs,
    faults: srcFaults,
  });
  if (srcOnly) return srcOnly;
  return qemuSidesCannotRun(c, needs, setup, qemuNeeds(c, needs), ["src"]);
}

/** The capabilities a case sets or its family needs. */
function capsOf(c: AnyCase, needs: CaseNeeds): string[] {
  return [
    ...(c.caps ?? []),
    ...(c.srcCaps ?? []),
    ...(c.dstCaps ?? []),
    ...(needs.qemu ?? []).flatMap((n) => n.kind === "capability" ? [n.name] : []),
  ];
}

/** QEMU's bugs a QEMU source shows whoever its destination is. */
const SOURCE_BUGS = QEMU_BUGS.filter((b) => b.side !== "dst" && !b.peer);

const NOT_MODEL_CODE = "it received QEMU's guest, x86 code the model's vCPU does not run, and QEMU's " +
  "devices as QEMU describes them (kept as loaded, not run)";

const DEVICES_LOADED =
  "the model's destination keeps QEMU's device sections as QEMU's vmdesc describes them " +
  "(loading them is their check); QEMU's source keeps its devices only in a stream to a file";

/**
 * QEMU as the source, the model as the destination: QEMU's stream proven against the model's loader.
 * The model loads it as QEMU's machine (harness/world/qemu_machine.ts): its type, its RAM blocks, its
 * devices through a twin's vmdesc, kept per binary, machine, RAM and guest.
 */
export function createQemuToEngineWorld(
  engine: World = engineWorld,
  qemu: World & { readonly setup: QemuSetup | null } = qemuWorld,
): World {
  const sources = new Map<string, { spec: SideSpec; side: Side }>();
  const described = new Map<string, Promise<VmdescDevice[]>>();
  const twin = async (spec: SideSpec): Promise<VmdescDevice[]> => {
    const dir = await Deno.makeTempDir({ prefix: "migtest-twin-" });
    try {
      // Its own RAM: a memory backend's file is the source's guest memory, which the twin's boot would write.
      const side = await qemu.spawn({
        ...spec,
        dir,
        transcript: [],
        socketPaths: [],
        memoryBackend: undefined,
        auxRamShare: undefined,
      });
      try {
        // Run to where a source is when it migrates: a program is past its start (spawn waits for its
        // 'A'); the a-b guest has written its first pass ('B').
        if (spec.workload.kind === "a-b") {
          await waitFor("the twin's a-b guest to print 'B'", async () => {
            return (await Deno.readTextFile(side.serialPath).catch(() => "")).includes("B");
          }, { timeoutMs: spec.timeoutMs, intervalMs: 10 });
        }
        return await twinDevices(side, `${dir}/twin.mig`);
      } finally {
        await side.kill();
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  };
  return {
    name: "qemu-to-engine",
    // The source's faults go on the wire; the model's destination makes its own.
    wireFaults: true,
    qemuSides: { src: true, dst: false },
    prepare: () => qemu.prepare!(),
    cannotRun: (c, needs) => engine.cannotRun(c, needs) ?? qemuToEngineCannotRun(c, needs, qemu.setup),
    knownBug(c, needs) {
      const setup = qemu.setup;
      if (!setup) return null;
      const machine = typeof setup.machine === "string" ? setup.machine : undefined;
      return knownQemuBug(c, {
        src: setup.src,
        dst: setup.src,
        accel: effectiveAccel(accelsFor(needs, setup), setup.src),
        machine,
      }, SOURCE_BUGS.filter((b) => !b.sourceShowsOnTargetRun?.test(c.name)));
    },
    async spawn(spec: SideSpec): Promise<Side> {
      if (!qemu.setup) await qemu.prepare!();
      const setup = qemu.setup!;
      if (spec.name === "source") {
        const side = await qemu.spawn(spec);
        sources.set(spec.dir, { spec, side });
        return mixedSide(side, { deviceState: () => Promise.resolve({ unavailable: DEVICES_LOADED }) });
      }
      const source = sources.get(spec.dir);
      // Kept for a further target of the same source (a flow that migrates again).
      if (!source) throw new Error("qemu-to-engine: the target is spawned after its QEMU source");
      const s = source.spec;
      const key = JSON.stringify([setup.src.binary, setup.machine, s.machine, s.workload]);
      let devices = described.get(key);
      if (!devices) {
        devices = twin(s);
        described.set(key, devices);
        devices.catch(() => described.delete(key));
      }
      const file = `${spec.dir}/qemu-machine.json`;
      await Deno.writeTextFile(
        file,
        JSON.stringify({
          type: machineType(setup, "src"),
          blocks: await ramblocks(source.side.qmp, s.memoryBackend?.id ?? "pc.ram"),
          devices: await devices,
        }),
      );
      const side = await engine.spawn({ ...spec, qemuMachine: file });
      return mixedSide(side, {
        foreignGuest: NOT_MODEL_CODE,
        deviceState: () => Promise.resolve({ unavailable: DEVICES_LOADED }),
        mainBlock: spec.memoryBackend?.id ?? "pc.ram",
      });
    },
  };
}

export const qemuToEngineWorld = createQemuToEngineWorld();
