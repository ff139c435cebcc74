/**
 * The `x-test-` QMP commands: introspection (guest RAM and COLO cache reads and per-page digests, device
 * state, COLO progress), writes into guest RAM, breakpoints, known defects, stream faults and older
 * releases of the devices (cross-version migration). QEMU has
 * none of them; main.ts registers them beside the model's commands (engine/qmp/commands.ts).
 */
import type { Engine } from "../engine.ts";
import { errorMessage } from "../error.ts";
import { QmpError } from "../qmp/schema.ts";
import type { QmpCommand } from "../qmp/server.ts";
import type { RamBlock } from "../ram_block.ts";
import { type BreakpointName, BREAKPOINTS } from "./breakpoints.ts";
import { prepareCapture } from "./capture.ts";
import { KNOWN_DEFECTS } from "./defects.ts";
import { INJECT_FAULT_ARGS, parseStreamFault } from "./faults.ts";
import { pageDigests } from "./ram_digest.ts";
import { applyRelease, RELEASE_NAMES, type ReleaseName } from "./releases.ts";

/** Largest raw RAM read served in one reply. */
const MAX_RAM_READ = 16 << 20;

function block(e: Engine, idstr: unknown) {
  const b = e.machine.block(String(idstr ?? "pc.ram"));
  if (!b) throw new QmpError(`RAM block '${String(idstr)}' not found`);
  return b;
}

/** Per-page digests of one block (or all), read through `memory` (guest RAM or the COLO cache). */
function digestReply(e: Engine, idstr: unknown, memory: (b: RamBlock) => Uint8Array) {
  const blocks = idstr === undefined ? e.machine.blocks : [block(e, idstr)];
  return {
    "page-size": e.machine.blocks[0].pageSize,
    blocks: blocks.map((b) => ({
      idstr: b.idstr,
      pages: b.pages,
      digests: pageDigests(memory(b), b.pageSize).toBase64(),
    })),
  };
}

export function testCommands(e: Engine): QmpCommand[] {
  const m = e.machine;
  return [
    {
      name: "x-test-colo-cache-digest",
      args: { block: { type: "str", optional: true } },
      handler: (args) => {
        const cache = e.incoming.coloCache;
        if (!cache || cache.released) throw new QmpError("there is no COLO cache");
        return digestReply(e, args.block, (b) => cache.blockMemory(b));
      },
    },
    {
      name: "x-test-colo-cache-read",
      args: { block: { type: "str" }, offset: { type: "int" }, size: { type: "int" } },
      handler: (args) => {
        const cache = e.incoming.coloCache;
        if (!cache || cache.released) throw new QmpError("there is no COLO cache");
        const b = block(e, args.block);
        const off = args.offset as number;
        const size = args.size as number;
        if (off < 0 || size < 0 || size > MAX_RAM_READ || off + size > b.usedLength) {
          throw new QmpError(`read of ${size} bytes at ${off} is outside block '${b.idstr}'`);
        }
        return { data: cache.blockMemory(b).slice(off, off + size).toBase64() };
      },
    },
    {
      name: "x-test-colo-info",
      handler: () => ({
        primary: e.migration.colo
          ? {
            checkpoints: e.migration.colo.checkpoints,
            failover: e.migration.colo.failover.status,
            stats: e.migration.colo.stats,
          }
          : null,
        secondary: e.incoming.colo
          ? {
            applied: e.incoming.colo.applied,
            failover: e.incoming.colo.failover.status,
            loading: e.incoming.colo.loading,
          }
          : null,
      }),
    },
    {
      name: "x-test-breakpoint",
      args: { name: { type: { enum: [...BREAKPOINTS] } }, persistent: { type: "bool", optional: true } },
      handler: (args) => e.breakpoints.arm(args.name as BreakpointName, args.persistent === true),
    },
    {
      name: "x-test-continue",
      args: { name: { type: { enum: [...BREAKPOINTS] } }, disarm: { type: "bool", optional: true } },
      handler: (args) => {
        if (args.disarm) e.breakpoints.disarm(args.name as BreakpointName);
        else if (!e.breakpoints.continue(args.name as string)) {
          throw new QmpError(`nothing is paused at breakpoint '${args.name}'`);
        }
      },
    },
    {
      name: "x-test-ram-digest",
      args: { block: { type: "str", optional: true } },
      handler: (args) => {
        return digestReply(e, args.block, (b) => b.mem);
      },
    },
    {
      name: "x-test-ram-read",
      args: { block: { type: "str" }, offset: { type: "int" }, size: { type: "int" } },
      handler: (args) => {
        const b = block(e, args.block);
        const off = args.offset as number;
        const size = args.size as number;
        if (off < 0 || size < 0 || size > MAX_RAM_READ || off + size > b.usedLength) {
          throw new QmpError(`read of ${size} bytes at ${off} is outside block '${b.idstr}'`);
        }
        return { data: b.mem.slice(off, off + size).toBase64() };
      },
    },
    {
      name: "x-test-ram-write",
      args: { block: { type: "str" }, offset: { type: "int" }, data: { type: "str" } },
      handler: (args) => {
        const b = block(e, args.block);
        const data = Uint8Array.fromBase64(args.data as string);
        const off = args.offset as number;
        if (off < 0 || off + data.length > b.usedLength) {
          throw new QmpError(`write of ${data.length} bytes at ${off} is outside block '${b.idstr}'`);
        }
        b.mem.set(data, off);
        for (let p = Math.floor(off / b.pageSize); p * b.pageSize < off + data.length; p++) b.markDirty(p);
      },
    },
    {
      name: "x-test-page-bytes",
      args: {
        block: { type: "str", optional: true },
        start: { type: "int" },
        end: { type: "int" },
        stride: { type: "int", optional: true },
      },
      handler: (args) => {
        const b = block(e, args.block);
        const stride = (args.stride as number | undefined) ?? b.pageSize;
        const start = args.start as number;
        const end = args.end as number;
        if (stride <= 0 || start < 0 || end > b.usedLength || start > end) {
          throw new QmpError(`bad range [${start}, ${end}) stride ${stride} for block '${b.idstr}'`);
        }
        const out = new Uint8Array(Math.ceil((end - start) / stride));
        for (let i = 0, a = start; a < end; a += stride, i++) out[i] = b.mem[a];
        return { data: out.toBase64() };
      },
    },
    {
      name: "x-test-ram-fill",
      args: { seed: { type: "int" }, "entropy-bits": { type: "int", optional: true } },
      handler: (args) => {
        // Seeded contents for throughput measurements (the guest should be stopped): every byte random
        // (incompressible), or only `entropy-bits` random bits per byte (compressible).
        const bits = (args["entropy-bits"] as number | undefined) ?? 8;
        if (bits < 1 || bits > 8) throw new QmpError("'entropy-bits' must be between 1 and 8");
        const mask = (0x01010101 * ((1 << bits) - 1)) >>> 0;
        let x = (args.seed as number) >>> 0 || 1;
        for (const b of m.blocks) {
          const words = new Uint32Array(b.mem.buffer, b.mem.byteOffset, b.mem.length >>> 2);
          for (let i = 0; i < words.length; i++) {
            x ^= x << 13;
            x ^= x >>> 17;
            x ^= x << 5;
            words[i] = x & mask;
          }
          for (let p = 0; p < b.pages; p++) b.markDirty(p);
        }
      },
    },
    { name: "x-test-device-state", handler: () => ({ devices: m.deviceState() }) },
    {
      // The pages the guest wrote since its dirty log was last cleared (on a postcopy destination: since
      // RUN), one bit per page as the log's little-endian words: what may differ from the source.
      name: "x-test-guest-written",
      handler: () => ({
        blocks: m.blocks.map((b) => ({
          idstr: b.idstr,
          pages: b.pages,
          bitmap: new Uint8Array(Int32Array.from(b.dirtyLog, (_, i) => Atomics.load(b.dirtyLog, i)).buffer)
            .toBase64(),
        })),
      }),
    },
    {
      // Postcopy's statistics on either side: the destination's faults (faults, those on discarded pages,
      // resolved, pages placed, blocktime), the source's requests for pages it had sent already.
      name: "x-test-postcopy-stats",
      handler: () => {
        const pc = e.incoming.postcopy;
        const source = e.migration.postcopyRequestStats();
        if (!pc && !source) throw new QmpError("no postcopy on this side (neither incoming nor outgoing)");
        return { ...(pc ? { destination: pc.stats() } : {}), ...(source ? { source } : {}) };
      },
    },
    {
      name: "x-test-inject-fault",
      args: INJECT_FAULT_ARGS,
      handler: (args) => e.faults.inject(parseStreamFault(args)),
    },
    {
      // Tees the main channel of later outgoing migrations into `file` (absolute; the engine may write
      // only in its run directory, so a path outside it is refused here); without `file`, stops.
      name: "x-test-capture",
      args: { file: { type: "str", optional: true } },
      handler: async (args) => {
        const file = args.file as string | undefined;
        if (file !== undefined) {
          try {
            await prepareCapture(file);
          } catch (err) {
            throw new QmpError(`cannot capture into '${file}': ${errorMessage(err)}`);
          }
        }
        e.faults.capture(file ?? null);
      },
    },
    {
      // The side's devices become those of an older release (engine/testing/releases.ts), before it
      // migrates; the reply names the fields that release does not have.
      name: "x-test-release",
      args: { name: { type: { enum: [...RELEASE_NAMES] } } },
      handler: (args) => {
        // A destination may already listen (setup); it must not have begun to load.
        if (e.migration.status !== "none" || !["none", "setup"].includes(e.incoming.status)) {
          throw new QmpError("a release is chosen before the side migrates");
        }
        try {
          return { lacks: applyRelease(m, args.name as ReleaseName) };
        } catch (err) {
          throw new QmpError(errorMessage(err));
        }
      },
    },
    {
      name: "x-test-defect",
      args: { name: { type: { enum: Object.keys(KNOWN_DEFECTS) } }, enabled: { type: "bool" } },
      handler: (args) => {
        if (args.enabled) e.defects.add(args.name as string);
        else e.defects.delete(args.name as string);
      },
    },
  ];
}
