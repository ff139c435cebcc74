/**
 * The dirty page rate (QEMU's migration/dirtyrate.c): `calc-dirty-rate` measures for calc-time how fast
 * the guest dirties memory, `query-dirty-rate` reports it (MB/s). Three modes, as QEMU's:
 * page-sampling (the default: sample-pages per GiB of each block hashed at the start and the end, the
 * changed share scaled to the block), dirty-ring (the pages each vCPU pushed onto its dirty ring, so
 * per vCPU; needs the ring) and dirty-bitmap (every page; QEMU counts the dirty log's bits, the model the
 * pages whose content changed, so a write of the same value does not count here).
 */
import { crc32 } from "node:zlib";
import type { Machine } from "./guest/machine.ts";
import type { QmpCommand } from "./qmp/server.ts";
import { QmpError } from "./qmp/schema.ts";
import { TARGET_PAGE_SIZE } from "./ram_block.ts";

export type DirtyRateMode = "page-sampling" | "dirty-ring" | "dirty-bitmap";
export type DirtyRateStatus = "unstarted" | "measuring" | "measured";

const MIN_CALC_TIME_MS = 50;
const MAX_CALC_TIME_MS = 60_000;
const MIN_SAMPLE_PAGES = 128;
const MAX_SAMPLE_PAGES = 16384;
const DEFAULT_SAMPLE_PAGES = 512;
const MiB = 1 << 20;
const GiB = 1 << 30;

export interface DirtyRateInfo {
  status: DirtyRateStatus;
  "sample-pages": number;
  "dirty-rate"?: number;
  mode: DirtyRateMode;
  "calc-time-unit": "second" | "millisecond";
  "start-time": number;
  "calc-time": number;
  "vcpu-dirty-rate"?: { id: number; "dirty-rate": number }[];
}

export class DirtyRate {
  #info: DirtyRateInfo = {
    status: "unstarted",
    "sample-pages": 0,
    mode: "page-sampling",
    "calc-time-unit": "second",
    "start-time": 0,
    "calc-time": 0,
  };
  #cancel: (() => void) | null = null;

  constructor(private readonly machine: Machine) {}

  get info(): DirtyRateInfo {
    return structuredClone(this.#info);
  }

  /** qmp_calc_dirty_rate: checks as QEMU 10.0 checks, then measures for calc-time. */
  calc(args: {
    calcTime: number;
    unit?: "second" | "millisecond";
    samplePages?: number;
    mode?: DirtyRateMode;
  }): void {
    if (this.#info.status === "measuring") throw new Error("the dirty rate is already being measured.");
    const unit = args.unit ?? "second";
    const ms = unit === "second" ? args.calcTime * 1000 : args.calcTime;
    if (!(ms >= MIN_CALC_TIME_MS && ms <= MAX_CALC_TIME_MS)) {
      throw new Error(`Calculation time is out of range [${MIN_CALC_TIME_MS}ms, ${MAX_CALC_TIME_MS}ms].`);
    }
    const mode = args.mode ?? "page-sampling";
    if (args.samplePages !== undefined) {
      if (mode !== "page-sampling") throw new Error("sample-pages is used only in page-sampling mode");
      if (args.samplePages < MIN_SAMPLE_PAGES || args.samplePages > MAX_SAMPLE_PAGES) {
        throw new Error(`sample-pages is out of range[${MIN_SAMPLE_PAGES}, ${MAX_SAMPLE_PAGES}].`);
      }
    }
    if (mode === "dirty-ring" && !this.machine.dirtyRing) {
      throw new Error("mode dirty-ring is not enabled, use other method instead.");
    }
    const samplePages = mode === "page-sampling" ? args.samplePages ?? DEFAULT_SAMPLE_PAGES : 0;
    this.#info = {
      status: "measuring",
      "sample-pages": samplePages,
      mode,
      "calc-time-unit": unit,
      "start-time": Math.floor(Date.now() / 1000),
      "calc-time": args.calcTime,
    };
    const clock = this.machine.clock;
    const t0 = clock.now();
    const finish = this.#start(mode, samplePages);
    this.#cancel = clock.timer(() => {
      this.#cancel = null;
      const seconds = Math.max(clock.now() - t0, 1) / 1000;
      const { total, vcpu } = finish(seconds);
      this.#info = {
        ...this.#info,
        status: "measured",
        "dirty-rate": total,
        ...(vcpu ? { "vcpu-dirty-rate": vcpu } : {}),
      };
    }, ms);
  }

  /** What the mode records at the start; the returned function turns it into MB/s at the end. */
  #start(
    mode: DirtyRateMode,
    samplePages: number,
  ): (seconds: number) => { total: number; vcpu?: { id: number; "dirty-rate": number }[] } {
    const m = this.machine;
    if (mode === "dirty-ring") {
      const ring = m.dirtyRing!;
      const pushes0 = ring.pushes;
      return (seconds) => {
        const rate = Math.round(((ring.pushes - pushes0) * TARGET_PAGE_SIZE / MiB) / seconds);
        return { total: rate, vcpu: [{ id: 0, "dirty-rate": rate }] };
      };
    }
    // Per block: which pages are looked at (a seeded spread for page-sampling, all for dirty-bitmap).
    const samples = m.blocks.map((b) => {
      const count = mode === "dirty-bitmap"
        ? b.pages
        : Math.min(b.pages, Math.max(1, Math.ceil(samplePages * b.usedLength / GiB)));
      const pages = new Uint32Array(count);
      for (let i = 0; i < count; i++) {
        pages[i] = mode === "dirty-bitmap" ? i : Math.floor(Math.random() * b.pages);
      }
      const hash = (p: number) => crc32(b.mem.subarray(p * TARGET_PAGE_SIZE, (p + 1) * TARGET_PAGE_SIZE));
      return { b, pages, before: Uint32Array.from(pages, hash), hash };
    });
    return (seconds) => {
      let dirtyBytes = 0;
      for (const s of samples) {
        let changed = 0;
        s.pages.forEach((p, i) => {
          if (s.hash(p) !== s.before[i]) changed++;
        });
        // The changed share of the sample, scaled to the whole block.
        dirtyBytes += changed / s.pages.length * s.b.usedLength;
      }
      return { total: Math.round(dirtyBytes / MiB / seconds) };
    };
  }

  close(): void {
    this.#cancel?.();
    this.#cancel = null;
  }
}

export function dirtyRateCommands(d: DirtyRate): QmpCommand[] {
  return [
    {
      name: "calc-dirty-rate",
      args: {
        "calc-time": { type: "int" },
        "calc-time-unit": { type: { enum: ["second", "millisecond"] }, optional: true },
        "sample-pages": { type: "int", optional: true },
        mode: { type: { enum: ["page-sampling", "dirty-ring", "dirty-bitmap"] }, optional: true },
      },
      handler: (a) => {
        try {
          d.calc({
            calcTime: a["calc-time"] as number,
            unit: a["calc-time-unit"] as "second" | "millisecond" | undefined,
            samplePages: a["sample-pages"] as number | undefined,
            mode: a.mode as DirtyRateMode | undefined,
          });
        } catch (e) {
          throw new QmpError((e as Error).message);
        }
      },
    },
    { name: "query-dirty-rate", handler: () => d.info },
  ];
}
