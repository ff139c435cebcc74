/**
 * Backends: the same case records drive our engine (default) or a real qemu-system-x86_64
 * (MIGTEST_BACKEND=qemu, or `deno task matrix --backend qemu`; the binary from QTEST_QEMU_BINARY[_SRC|_DST]
 * as upstream, else qemu-system-x86_64 on PATH). Memory is read the way upstream reads it on QEMU (qtest,
 * pmemsave) and through the engine's x-test commands on the model; one checker serves both.
 */
import { DIGEST_BYTES, pageDigests } from "../engine/testing/ram_digest.ts";
import type { MigrationCase } from "./case.ts";
import type { EngineProcess } from "./engine_process.ts";
import type { QemuProcess } from "./qemu_process.ts";
import type { RamSource } from "./check/ram_equal.ts";

export type Backend = "engine" | "qemu";

export function backendFromEnv(): Backend {
  const b = Deno.env.get("MIGTEST_BACKEND") ?? "engine";
  if (b !== "engine" && b !== "qemu") throw new Error(`MIGTEST_BACKEND must be engine or qemu, got '${b}'`);
  return b;
}

/** Guest RAM of QEMU's pc machine as upstream sizes it. */
export const QEMU_RAM_MIB = 150;

/**
 * Why a case cannot run on QEMU 7.2 (it is then reported as skipped with this reason), or null. These
 * are facts about QEMU, not shortcuts: each names what QEMU lacks or what only the model offers.
 */
export function qemuSkipReason(c: MigrationCase): string | null {
  if (c.flow === "colo") return "COLO on QEMU needs a replication setup (block replication, colo-compare)";
  if (c.fault || c.dstFaults || c.defects || c.guards) {
    return "fault injection and known defects are x-test features of the model engine";
  }
  if (c.transport === "file" || c.flow === "analyze-script") {
    return "QEMU 7.2 has no file: migration transport (added in QEMU 8.2)";
  }
  if (c.migrateChannels) return "the migrate 'channels' argument needs QEMU 8.2";
  const params = { ...c.srcParams, ...c.dstParams };
  if ("zero-page-detection" in params) return "zero-page-detection needs QEMU 9.0";
  // Found by this harness: QEMU 7.2.22 accepts these and reads back 1 (the default) every time, so a
  // case that sets level 2 cannot be run as specified (the model applies them).
  if ("multifd-zlib-level" in params || "multifd-zstd-level" in params) {
    return "QEMU 7.2 does not apply multifd-zlib-level/multifd-zstd-level (query-migrate-parameters reads back 1)";
  }
  if (c.machine && c.machine !== "pc") return "machine fixtures other than pc exist only in the model";
  if (c.workload && c.workload.kind !== "a-b") return "only upstream's a-b boot sector runs on QEMU";
  if (c.fillRandom || c.vcpu || c.dstVcpu || c.memPrealloc) return "guest-control knobs of the model engine";
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

/** The side's RAM as the RAM checker reads it. */
export function engineRam(side: EngineProcess): RamSource {
  return {
    name: side.name,
    digests: () => side.qmp.execute("x-test-ram-digest", {}, { timeoutMs: 60_000 }),
    async readPage(idstr, offset, size) {
      const r = await side.qmp.execute<{ data: string }>("x-test-ram-read", { block: idstr, offset, size });
      return Uint8Array.fromBase64(r.data);
    },
  };
}

/**
 * QEMU's RAM through `pmemsave` of guest-physical [0, 150 MiB) into the run directory (one call; qtest
 * `read` of that much is far slower), digested here with the engine's page digest.
 */
export function qemuRam(side: QemuProcess, dir: string): RamSource {
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

export { DIGEST_BYTES };
