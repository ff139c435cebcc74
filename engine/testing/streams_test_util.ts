/**
 * Test helpers shared by the stream tests (not part of the engine: only tests import it). A writer or reader
 * over an in-memory link, and a guest without a vCPU carrying the four real devices.
 */
import { CpuDevice } from "../guest/devices/cpu.ts";
import type { Device } from "../guest/devices/device.ts";
import { QueueDevice } from "../guest/devices/queue.ts";
import { SerialDevice } from "../guest/devices/serial.ts";
import { TimerDevice } from "../guest/devices/timer.ts";
import { CPU_WORDS, DEV_WORDS } from "../guest/regs.ts";
import { WORKLOAD_IDS } from "../guest/workload.ts";
import { QEMUFileReader, QEMUFileWriter } from "../qemu_file.ts";
import { RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";
import { readAll } from "../transport/buffer.ts";
import { memoryLinkPair } from "../transport/link.ts";

/** Runs `fn` on a writer over an in-memory link (read concurrently) and returns every byte it wrote. */
export async function encode(
  fn: (w: QEMUFileWriter) => void | Promise<void>,
  threshold = 4096,
): Promise<Uint8Array> {
  const [a, b] = memoryLinkPair();
  const w = new QEMUFileWriter(a, threshold);
  const reading = readAll(b);
  try {
    await fn(w);
    await w.flush();
  } finally {
    a.close();
  }
  const out = await reading;
  b.close();
  return out;
}

/** Feeds `bytes` to a reader over an in-memory link that ends after them. */
export async function withReader<T>(
  bytes: Uint8Array,
  fn: (r: QEMUFileReader) => Promise<T>,
  bufSize = 8192,
): Promise<T> {
  const [a, b] = memoryLinkPair(bytes.length + 1);
  await a.write(bytes);
  a.close();
  try {
    return await fn(new QEMUFileReader(b, bufSize));
  } finally {
    b.close();
  }
}

/** A guest without a vCPU: two small RAM blocks, the register files and the four real devices. */
export class TestGuest {
  readonly cpuRegs = new Int32Array(new SharedArrayBuffer(CPU_WORDS * 4));
  readonly devRegs = new Int32Array(new SharedArrayBuffer(DEV_WORDS * 4));
  readonly blocks = [
    new RamBlock({ idstr: "pc.ram", size: 13 * TARGET_PAGE_SIZE }),
    new RamBlock({ idstr: "vga.vram", size: 3 * TARGET_PAGE_SIZE }),
  ];
  readonly serialOut: number[] = [];
  readonly serial = new SerialDevice((b) => this.serialOut.push(...b));
  readonly devices: Device[];

  constructor(workload: keyof typeof WORKLOAD_IDS = "random") {
    this.devices = [
      new CpuDevice(this.cpuRegs, WORKLOAD_IDS[workload]),
      this.serial,
      new TimerDevice(this.devRegs),
      new QueueDevice(this.devRegs),
    ];
  }
}
