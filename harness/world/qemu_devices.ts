/**
 * A QEMU side's device state, field by field: the side (stopped) migrates to a `file:` stream and the
 * stream analyzer, run as its own process, decodes the device sections through the stream's vmdesc.
 *
 * Found on QEMU 10.0: the paused destination before `cont` accepts the outgoing migration, goes to
 * `postmigrate`, and still takes `cont` and runs. A source whose migration completed is in `postmigrate`,
 * and QEMU refuses any further outgoing migration from there ("Can't migrate the vm that was paused due to
 * previous migration"); leaving that state takes `cont`, which runs the guest and changes what is to be
 * compared. Nothing has run since that migration, though, so the stream it wrote holds the state: when it
 * went to a `file:` the analyzer reads that file; after a socket migration the stream is gone and the
 * state is unavailable, with that reason.
 */
import { analyzerStateToDevices, runAnalyzer } from "../analyzer.ts";
import { WaitAbort, waitFor } from "../../engine/wait.ts";
import type { QmpClient } from "../../engine/qmp/client.ts";
import type { UncomparedField } from "../check/device_equal.ts";
import type { DeviceState, Unavailable } from "./world.ts";

/** How long saving one side's state may take (150 MiB of a stopped guest, unthrottled: about a second). */
const SAVE_TIMEOUT_MS = 60_000;

/**
 * Capabilities that change what the stream carries or that QEMU refuses for a plain `file:` migration
 * (multifd wants mapped-ram there; pause-before-switchover would wait for a migrate-continue; a file has
 * no return path: "Unable to read from file: Bad file descriptor"): switched off for the save and back on
 * after it, so the saved stream is the plain format the analyzer reads and the case's own migrations see
 * the capabilities they set.
 */
const OFF_FOR_SAVE = new Set([
  "multifd",
  "pause-before-switchover",
  "return-path",
  // Needs return-path: off with it (one migrate-set-capabilities, so QEMU checks the pair together).
  "switchover-ack",
  "xbzrle",
  "postcopy-ram",
  "mapped-ram",
  "compress",
  "x-colo",
]);

/**
 * Fields that legitimately differ between a source and its destination on QEMU, found on real runs
 * (10.0.2, TCG, precopy/file): each side's state is read at its own moment of host time.
 */
export const QEMU_UNCOMPARED_FIELDS: readonly UncomparedField[] = [
  {
    device: /^globalstate\//,
    field: /^(size|runstate)$/,
    why: "the run state when the stream was written: a source migrated running says running, the paused " +
      "destination's save says paused",
  },
  {
    device: /^mc146818rtc\//,
    field: /^cmos_data$/,
    // Registers 0-9 (seconds ... year), A (update in progress), C (interrupt flags), 0x32 (century).
    bytes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 0x32],
    why: "the RTC's clock registers follow the host clock (rtc base=utc), also while the guest is stopped",
  },
  {
    device: /^mc146818rtc\//,
    field: /^update_timer$/,
    why: "the RTC's next update is armed from the host clock at the moment the state is written",
  },
  {
    device: /^mc146818rtc\//,
    field: /^next_alarm_time$/,
    // Seen on 10.0.2: source "1796169600714823000", target "1796169600714822000".
    why: "the RTC's next alarm is recomputed from the host clock when the destination loads, rounded to " +
      "its 32 kHz ticks: the two sides land a microsecond apart",
  },
  {
    device: /\/ide\//,
    field: /^bmdma\.migration_retry_(sector_num|nsector)$/,
    why: "a DMA retry's position, stale on the source once its request ended; QEMU's load keeps its own " +
      "when no retry is pending (the a-b guest has no drive), so the destination's stays 0",
  },
];

/** The `file:` path and offset of a migrate command's uri, or null for another transport. */
export function fileUri(uri: string): { path: string; offset: number } | null {
  const m = /^file:([^,]*)(?:,offset=(\d+))?$/.exec(uri);
  return m ? { path: m[1], offset: Number(m[2] ?? 0) } : null;
}

/** The uri of the side's last `migrate` command in its QMP transcript, or null. */
export function lastMigrateUri(qmp: QmpClient): string | null {
  for (let i = qmp.transcript.length - 1; i >= 0; i--) {
    const e = qmp.transcript[i];
    if (e.side !== qmp.name || e.dir !== "send" || !e.text.includes('"migrate"')) continue;
    const msg = JSON.parse(e.text);
    if (msg.execute === "migrate") return typeof msg.arguments?.uri === "string" ? msg.arguments.uri : null;
  }
  return null;
}

/**
 * The devices of a stopped side: a paused side is saved to `file` (in `dir`, removed after); a side in
 * `postmigrate` is read from the `file:` stream its last migration wrote (see the head of this file).
 */
export async function readDeviceState(
  side: { name: string; qmp: QmpClient },
  file: string,
  dir: string,
): Promise<DeviceState | Unavailable> {
  const status = await side.qmp.execute<{ running: boolean; status: string }>("query-status");
  if (status.running) {
    // A running guest's devices change while they are written: the state would be no fixed point.
    return { unavailable: `${side.name} is ${status.status}: device state is read from a stopped side` };
  }
  if (status.status !== "postmigrate") return await saveDeviceState(side, file, dir);
  const uri = lastMigrateUri(side.qmp);
  const saved = uri ? fileUri(uri) : null;
  if (!saved || !(await Deno.stat(saved.path).then(() => true, () => false))) {
    return {
      unavailable: `${side.name} is in postmigrate after a migration to ${uri ?? "an unknown uri"}: QEMU ` +
        "refuses another outgoing migration from there, and only a file: stream keeps the state it sent",
    };
  }
  const args = ["--dump", "state", ...(saved.offset ? ["--offset", String(saved.offset)] : [])];
  return analyzerStateToDevices(await runAnalyzer(saved.path, dir, args));
}

/** Saves the side (stopped, not in postmigrate) to `file` in `dir` and returns its devices; the file is removed. */
export async function saveDeviceState(
  side: { name: string; qmp: QmpClient },
  file: string,
  dir: string,
): Promise<DeviceState> {
  const qmp = side.qmp;
  const caps = await qmp.execute<{ capability: string; state: boolean }[]>("query-migrate-capabilities");
  const off = caps.filter((c) => c.state && OFF_FOR_SAVE.has(c.capability)).map((c) => c.capability);
  const params = await qmp.execute<Record<string, unknown>>("query-migrate-parameters");
  const setCaps = (state: boolean) =>
    off.length
      ? qmp.execute("migrate-set-capabilities", {
        capabilities: off.map((capability) => ({ capability, state })),
      })
      : Promise.resolve();
  await setCaps(false);
  // A case may have throttled the bandwidth (non-converge): the save must not crawl at its rate. A file
  // is no TLS peer: a case's tls-creds is cleared for the save.
  const tlsCreds = typeof params["tls-creds"] === "string" ? params["tls-creds"] : "";
  await qmp.execute("migrate-set-parameters", {
    "max-bandwidth": 1n << 40n,
    ...(tlsCreds ? { "tls-creds": "" } : {}),
  });
  try {
    await qmp.execute("migrate", { uri: `file:${file}` });
    await waitFor(`${side.name}'s device-state save to ${file} to complete`, async () => {
      const m = await qmp.execute<{ status?: string; "error-desc"?: string }>("query-migrate");
      if (m.status === "failed") {
        throw new WaitAbort(`${side.name}: saving device state failed: ${m["error-desc"] ?? "no reason"}`);
      }
      return m.status === "completed";
    }, { timeoutMs: SAVE_TIMEOUT_MS, intervalMs: 20 });
    return analyzerStateToDevices(await runAnalyzer(file, dir, ["--dump", "state"]));
  } finally {
    await qmp.execute("migrate-set-parameters", {
      "max-bandwidth": params["max-bandwidth"],
      ...(tlsCreds ? { "tls-creds": tlsCreds } : {}),
    });
    await setCaps(true);
    await Deno.remove(file).catch(() => {});
  }
}
