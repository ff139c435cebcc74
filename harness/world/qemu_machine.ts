/**
 * A QEMU machine as the model needs it to load QEMU's stream (the qemu-to-engine pair): its machine type,
 * every RAM block with its used length (`info ramblock`: a destination must have each block the stream
 * names, at its length), and its devices as QEMU's vmdesc describes them (device sections carry no
 * self-description). The vmdesc comes from a twin of the source — the same binary, machine, RAM and
 * guest, run to where the source's guest is and saved out to a pipe (`exec:`, which QEMU 7.2 has too) —
 * since the source's own vmdesc arrives only after its last device section.
 */
import { findVmdesc } from "../../tools/analyze/vmdesc.ts";
import type { VmdescDevice } from "../../engine/vmdesc.ts";
import { WaitAbort, waitFor } from "../../engine/wait.ts";
import type { QmpClient } from "../../engine/qmp/client.ts";

export interface QemuMachine {
  type: string;
  blocks: { idstr: string; size: number }[];
  devices: VmdescDevice[];
}

/** How long the twin's save may take (its guest RAM to a file through cat: about a second). */
const SAVE_TIMEOUT_MS = 60_000;

/**
 * `info ramblock`'s rows: name, page size, offset, used, total, host address, ro/rw. The main RAM first
 * (`main`: pc.ram, or the memory backend's id, as QEMU names its block), the rest in QEMU's order.
 */
export function parseRamblocks(text: string, main = "pc.ram"): { idstr: string; size: number }[] {
  const rows = [...text.matchAll(/^\s*(\S+)\s+\d+ \w+\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+0x[0-9a-f]+/gm)]
    .map((m) => ({ idstr: m[1], size: Number.parseInt(m[2], 16) }));
  if (!rows.some((r) => r.idstr === main)) throw new Error(`info ramblock lists no ${main}:\n${text}`);
  return [...rows.filter((r) => r.idstr === main), ...rows.filter((r) => r.idstr !== main)];
}

/** The RAM blocks of a running QEMU (HMP's info ramblock through QMP), its main RAM (`main`) first. */
export async function ramblocks(qmp: QmpClient, main = "pc.ram"): Promise<{ idstr: string; size: number }[]> {
  return parseRamblocks(
    await qmp.execute<string>("human-monitor-command", { "command-line": "info ramblock" }),
    main,
  );
}

/** Stops `twin`, saves it to `file` and returns the devices its vmdesc describes (the file is removed). */
export async function twinDevices(
  twin: { name: string; qmp: QmpClient },
  file: string,
): Promise<VmdescDevice[]> {
  await twin.qmp.execute("stop");
  try {
    await twin.qmp.execute("migrate", { uri: `exec:cat > '${file}'` });
    await waitFor(`the twin's save to ${file} to complete`, async () => {
      const m = await twin.qmp.execute<{ status?: string; "error-desc"?: string }>("query-migrate");
      if (m.status === "failed") {
        throw new WaitAbort(`the twin's save failed: ${m["error-desc"] ?? "no reason"}`);
      }
      return m.status === "completed";
    }, { timeoutMs: SAVE_TIMEOUT_MS, intervalMs: 20 });
    const found = await findVmdesc(file);
    if (!found) throw new Error(`the twin's saved stream ${file} has no vmdesc`);
    return found.json.devices;
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}
