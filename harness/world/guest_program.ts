/**
 * The model's guest workloads as real x86 guests for QEMU (fixtures/guest/workload-bootblock.S): the
 * image is one program for every workload but a-b, told which to run by a parameter block the harness
 * fills in before QEMU boots it. The region a program writes starts at 1 MiB (above the BIOS, the VGA
 * hole and the program itself) and ends where the machine's RAM ends; the generator is the model's
 * xorshift128 seeded the model's way, so a seed draws the same sequence of choices in both worlds.
 */
import { seedRandomRegisters, WORKLOAD_IDS, type WorkloadSpec } from "../../engine/guest/workload.ts";
import { CPU_RNG } from "../../engine/guest/regs.ts";
import { machineFixture } from "../../fixtures/machines.ts";

/** The program image (build: `deno task bootsect`). */
export const WORKLOAD_IMAGE =
  new URL("../../fixtures/guest/workload-bootblock.img", import.meta.url).pathname;
/** Its sectors (the boot sector reads the others; the disk's geometry must hold them). */
export const WORKLOAD_IMAGE_SECTORS = 4;

/**
 * Where the parameter block is: in the image file, and in guest-physical memory once the program runs
 * (it copies the block to a page without code, where its writes cost TCG no retranslation).
 */
export const PARAMS_FILE_OFFSET = 0x200;
export const PARAMS_GPA = 0x6000;
const MAGIC = "MTWL";
const P = {
  kind: 4,
  base: 8,
  pages: 12,
  hotPages: 16,
  hotPercent: 20,
  restore: 24,
  heartbeat: 28,
  rng: 32,
  panicPage: 48,
  panicSeen: 52,
  panicWrote: 56,
} as const;
/** The size of the parameter block (read back whole for a panic's report). */
export const PARAMS_SIZE = 64;

/** The first byte of the programs' region. */
export const PROGRAM_BASE = 1 << 20;
const PAGE = 4096;

/** The guest RAM QEMU gives a machine fixture: its pc.ram, rounded up to 8 KiB as QEMU rounds `-m`. */
export function qemuRamBytes(machine: string): number {
  const ram = machineFixture(machine).blocks[0].size;
  return Math.ceil(ram / 8192) * 8192;
}

/** The parameters a program runs with, as the image's block holds them. */
export interface ProgramParams {
  kind: number;
  base: number;
  pages: number;
  hotPages: number;
  hotPercent: number;
  restore: boolean;
  rng: [number, number, number, number];
}

/**
 * What the program for `spec` runs with in a guest of `ramBytes`, or why no program can run it. The
 * model's defaults apply (engine/guest/workload.ts); its random writer's pages are every page of RAM, the
 * program's every page of its region.
 */
export function programParams(spec: WorkloadSpec, ramBytes: number): ProgramParams | { none: string } {
  if (spec.kind === "a-b") return { none: "a-b is its own boot sector (fixtures/guest/a-b-bootblock.S)" };
  const regionPages = Math.floor((ramBytes - PROGRAM_BASE) / PAGE);
  const rng: [number, number, number, number] = [0, 0, 0, 0];
  if ("seed" in spec) {
    const cpu = new Int32Array(CPU_RNG + 4);
    seedRandomRegisters(cpu, spec.seed);
    for (let i = 0; i < 4; i++) rng[i] = cpu[CPU_RNG + i] >>> 0;
  }
  const base = {
    kind: WORKLOAD_IDS[spec.kind],
    base: PROGRAM_BASE,
    hotPages: 0,
    hotPercent: 0,
    restore: false,
    rng,
  };
  switch (spec.kind) {
    case "idle":
      return { ...base, pages: 0 };
    case "random":
      return {
        ...base,
        pages: regionPages,
        hotPages: Math.max(1, Math.min(spec.hotPages ?? 256, regionPages)),
        hotPercent: spec.hotPercent ?? 80,
      };
    case "zero-churn": {
      const pages = spec.pages ?? 512;
      if (pages > regionPages) {
        return { none: `zero-churn over ${pages} pages needs more than ${regionPages}` };
      }
      return { ...base, pages, restore: spec.restore ?? false };
    }
    case "versions": {
      const pages = spec.pages ?? 4096;
      const journal = Math.ceil(pages / 1024);
      if (pages + journal > regionPages) {
        return { none: `versions over ${pages} pages and its journal need more than ${regionPages}` };
      }
      return { ...base, pages };
    }
  }
}

/** The image with its parameter block filled in. */
export function programImage(image: Uint8Array, params: ProgramParams): Uint8Array {
  const out = image.slice();
  const view = new DataView(out.buffer, PARAMS_FILE_OFFSET, PARAMS_SIZE);
  const magic = new TextDecoder().decode(out.subarray(PARAMS_FILE_OFFSET, PARAMS_FILE_OFFSET + 4));
  if (magic !== MAGIC) {
    throw new Error(
      `${WORKLOAD_IMAGE}: no parameter block at 0x${PARAMS_FILE_OFFSET.toString(16)} (read '${magic}'): ` +
        "rebuild it with deno task bootsect",
    );
  }
  view.setUint32(P.kind, params.kind, true);
  view.setUint32(P.base, params.base, true);
  view.setUint32(P.pages, params.pages, true);
  view.setUint32(P.hotPages, params.hotPages, true);
  view.setUint32(P.hotPercent, params.hotPercent, true);
  view.setUint32(P.restore, params.restore ? 1 : 0, true);
  params.rng.forEach((w, i) => view.setUint32(P.rng + 4 * i, w, true));
  return out;
}

/** What a running program's block says: its heartbeat and, after a panic, what it saw. */
export interface ProgramState {
  heartbeat: number;
  panic?: { page: number; seen: number; wrote: number };
}

/** Decodes the parameter block read back from guest RAM (PARAMS_SIZE bytes at PARAMS_GPA). */
export function programState(block: Uint8Array): ProgramState {
  const view = new DataView(block.buffer, block.byteOffset, block.length);
  const state: ProgramState = { heartbeat: view.getUint32(P.heartbeat, true) };
  const seen = view.getUint32(P.panicSeen, true);
  const wrote = view.getUint32(P.panicWrote, true);
  if (seen !== wrote) state.panic = { page: view.getUint32(P.panicPage, true), seen, wrote };
  return state;
}

/** A versions program's panic in the model's words (engine/guest/workload.ts). */
export function describePanic(panic: NonNullable<ProgramState["panic"]>, params: ProgramParams): string {
  const at = params.base + panic.page * PAGE;
  const jat = params.base + (params.pages + (panic.page >>> 10)) * PAGE + (panic.page & 1023) * 4;
  return `stale read: page ${panic.page} (0x${at.toString(16)}) holds version ${panic.seen}, but the ` +
    `guest's journal (0x${jat.toString(16)}) says it last wrote version ${panic.wrote}`;
}
