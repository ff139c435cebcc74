/**
 * The QEMU world: each side is a real qemu-system-x86_64 (MIGTEST_BACKEND=qemu, or
 * `deno task matrix --backend qemu`; the binary from QTEST_QEMU_BINARY[_SRC|_DST] as upstream, else
 * qemu-system-x86_64 on PATH). Memory is read the way upstream reads it (qtest, pmemsave), so the checks
 * that serve the model serve QEMU too.
 */
import { pageDigests } from "../../engine/testing/ram_digest.ts";
import type { RamSource } from "../check/ram_equal.ts";
import type { MigrationCase } from "../case.ts";
import { ProcessSide } from "./process_side.ts";
import { QemuProcess } from "./qemu_process.ts";
import type { DeviceState, Side, SideSpec, Unavailable, World } from "./world.ts";

/** Guest RAM of QEMU's pc machine as upstream sizes it. */
export const QEMU_RAM_MIB = 150;

/**
 * Why a case cannot run on QEMU 7.2 (it is then reported as skipped with this reason), or null. These
 * are facts about QEMU, not shortcuts: each names what QEMU lacks or what only the model offers.
 */
export function qemuSkipReason(c: MigrationCase): string | null {
  if (c.flow === "colo") return "COLO on QEMU needs a replication setup (block replication, colo-compare)";
  if ((c.flow === "precopy" && (c.fault || c.dstFaults)) || c.defects || c.guards) {
    return "fault injection and known defects are x-test features of the model engine";
  }
  if (c.flow === "file" || c.flow === "analyze-script") {
    return "QEMU 7.2 has no file: migration transport (added in QEMU 8.2)";
  }
  if (c.flow === "precopy" && c.migrateChannels) return "the migrate 'channels' argument needs QEMU 8.2";
  const params = { ...c.srcParams, ...c.dstParams };
  if ("zero-page-detection" in params) return "zero-page-detection needs QEMU 9.0";
  // Found by this harness: QEMU 7.2.22 accepts these and reads back 1 (the default) every time, so a
  // case that sets level 2 cannot be run as specified (the model applies them).
  if ("multifd-zlib-level" in params || "multifd-zstd-level" in params) {
    return "QEMU 7.2 does not apply multifd-zlib-level/multifd-zstd-level (query-migrate-parameters reads back 1)";
  }
  if (c.machine && c.machine !== "pc") return "machine fixtures other than pc exist only in the model";
  if (c.workload && c.workload.kind !== "a-b") return "only upstream's a-b boot sector runs on QEMU";
  if ((c.flow === "precopy" && c.fillRandom) || c.vcpu || c.dstVcpu || c.memPrealloc) {
    return "guest-control knobs of the model engine";
  }
  if (c.name === "/migration/multifd/bad/uuid") {
    return "QEMU 7.2 bug found by this case: when the destination refuses the multifd channels, the source " +
      "sometimes aborts (qemu_mutex_lock_impl: Assertion `mutex->initialized' failed, status 134); it passes " +
      "when QEMU does not crash, so it is skipped to keep CI deterministic";
  }
  if (c.name === "/migration/multifd/bad/compression-flag") {
    return "observed disagreement: QEMU 7.2's destination reports the multifd compression-flag mismatch " +
      "nowhere (no stderr, query-migrate stays 'active' without error-desc; the source sees a broken pipe)";
  }
  return null;
}

/**
 * QEMU's RAM through `pmemsave` of guest-physical [0, 150 MiB) into the run directory (one call; qtest
 * `read` of that much is far slower), digested here with the engine's page digest.
 */
function pmemsaveRam(side: QemuProcess, dir: string): RamSource {
  let image: Uint8Array | null = null;
  const load = async () => {
    if (image) return image;
    const file = `${dir}/${side.name}.pmem`;
    await side.qmp.execute("pmemsave", { val: 0, size: QEMU_RAM_MIB << 20, filename: file }, {
      timeoutMs: 60_000,
    });
    image = await Deno.readFile(file);
    await Deno.remove(file);
    return image;
  };
  return {
    name: side.name,
    async digests() {
      const mem = await load();
      return {
        "page-size": 4096,
        blocks: [{ idstr: "pc.ram", pages: mem.length / 4096, digests: pageDigests(mem, 4096).toBase64() }],
      };
    },
    async readPage(_idstr, offset, size) {
      return (await load()).slice(offset, offset + size);
    },
  };
}

/** exit-on-error (migrate-incoming) came with QEMU 9.1: before it a failed load always ends the process. */
export function hasExitOnError(version: { major: number; minor: number }): boolean {
  return version.major > 9 || (version.major === 9 && version.minor >= 1);
}

export class QemuSide extends ProcessSide<QemuProcess> implements Side {
  readonly staysUpAfterFailedLoad: boolean;

  constructor(process: QemuProcess, name: "source" | "target", readonly dir: string) {
    super(process, name);
    this.staysUpAfterFailedLoad = hasExitOnError(process.qmp.greeting.QMP.version.qemu);
  }

  ram(): RamSource {
    return pmemsaveRam(this.process, this.dir);
  }

  coloCache(): Unavailable {
    return { unavailable: "QEMU has no command that reads the COLO cache" };
  }

  readRam(offset: number, size: number): Promise<Uint8Array> {
    return this.process.qtest.read(offset, size);
  }

  writeRam(offset: number, data: Uint8Array): Promise<void> {
    return this.process.qtest.write(offset, data);
  }

  firstBytes(start: number, end: number): Promise<Uint8Array> {
    const addrs: number[] = [];
    for (let a = start; a < end; a += 4096) addrs.push(a);
    return this.process.qtest.readbMany(addrs, { timeoutMs: 60_000 });
  }

  deviceState(): Promise<DeviceState | Unavailable> {
    return Promise.resolve({ unavailable: "QEMU has no command that returns device state field by field" });
  }

  captureMainChannel(): Promise<Unavailable> {
    return Promise.resolve({
      unavailable:
        "QEMU has no command that tees its outgoing migration stream (x-test-capture is the model's)",
    });
  }
}

export const qemuWorld: World = {
  name: "qemu",
  cannotRun: qemuSkipReason,
  async spawn(spec: SideSpec): Promise<Side> {
    // TCG by default: this machine's KVM is nested and slower than TCG for the a-b guest.
    // MIGTEST_QEMU_ACCEL=kvm,tcg gives upstream's order where KVM is real.
    const accel = (Deno.env.get("MIGTEST_QEMU_ACCEL") ?? "tcg").split(",").filter(Boolean);
    const process = await QemuProcess.spawn({
      name: spec.name,
      dir: spec.dir,
      incoming: spec.incoming,
      startPaused: spec.startPaused,
      uuid: spec.uuid,
      transcript: spec.transcript,
      timeoutMs: spec.timeoutMs,
      memoryMiB: QEMU_RAM_MIB,
      accel,
    });
    return new QemuSide(process, spec.name, spec.dir);
  },
};
