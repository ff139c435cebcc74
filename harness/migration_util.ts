/**
 * Guest-side helpers and checks shared by the flows (upstream's migration-util.c and the checks of
 * migrate_end): the serial's `B`, the dirty-memory marker, RAM and device equality, and a guest that
 * keeps running and passes check_guests_ram.
 */
import { AB_END, AB_START } from "../engine/guest/workload.ts";
import { checkGuestsRam } from "../engine/guest/guests_ram.ts";
import {
  changedFields,
  compareDeviceState,
  exactField,
  type UncomparedField,
  withoutFields,
} from "./check/device_equal.ts";
import { compareRam, type RamSource } from "./check/ram_equal.ts";
import { FlowError, type MigrationPair } from "./framework.ts";
import { isUnavailable, type Side } from "./world/world.ts";

/** Upstream's dirty-memory marker: 3 MiB + 1 KiB into the test range, never touched by the guest. */
const MARKER_OFFSET = AB_START + (3 << 20) + 1024;
const MARKER = 0xfeed12345678cafen;

/** The workload is upstream's a-b guest (the checks that read its pattern apply). */
export function isAbGuest(p: MigrationPair): boolean {
  return (p.c.workload?.kind ?? "a-b") === "a-b";
}

/** The a-b guest that suspends itself (ACPI S3) after its first 'B' (upstream's suspend_me). */
export function suspendsGuest(p: MigrationPair): boolean {
  const w = p.c.workload;
  return w?.kind === "a-b" && w.suspendMe === true;
}

/** The source guest's 'B' and, for a suspending guest, its SUSPEND (upstream's wait_for_suspend). */
export async function waitSourceGuest(p: MigrationPair): Promise<void> {
  await waitSerialB(p, p.src);
  if (suspendsGuest(p)) await p.waitEvent(p.src, "SUSPEND");
}

/** How long a guest other than a-b runs before a migration that needs its memory dirty. */
export const GUEST_WARMUP_MS = 300;

/**
 * The source's guest is dirtying memory, before a migration that must not converge starts: the a-b guest
 * is past its boot phase (which only zeroes pages, so RAM is still all zero pages) once the first page of
 * its range counts up; another guest runs GUEST_WARMUP_MS. A first pass over untouched RAM ends before
 * the first bandwidth measurement and converges at once, as it does in QEMU.
 */
export async function waitGuestDirtying(p: MigrationPair): Promise<void> {
  if (!isAbGuest(p)) return await p.sleep(GUEST_WARMUP_MS);
  await p.wait(
    "the source's a-b guest past its boot phase",
    async () => (await p.src.readRam(AB_START, 1))[0] !== 0,
  );
}

/** wait_for_serial: the first `B` in the side's serial file; anything but A/B is an error. */
export async function waitSerialB(p: MigrationPair, side: Side): Promise<void> {
  await p.wait(`'B' on ${side.name}'s serial`, async (see) => {
    const text = await Deno.readTextFile(side.serialPath).catch(() => "");
    see(text ? `the serial reads '${text.slice(-16)}' (${text.length} characters)` : "nothing on the serial");
    for (const ch of text) {
      if (ch === "B") return true;
      if (ch !== "A") throw new FlowError(`unexpected byte '${ch}' on ${side.name}'s serial`);
    }
    return undefined;
  });
}

export async function writeMarker(p: MigrationPair): Promise<void> {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, MARKER, true);
  await p.src.writeRam(MARKER_OFFSET, b);
}

/** migrate_wait_for_dirty_mem: the marker reached the destination, and a sent page got dirty again. */
export async function waitForDirtyMem(p: MigrationPair): Promise<void> {
  await p.wait("the dirty-memory marker on the target", async () => {
    const b = await p.dst.readRam(MARKER_OFFSET, 8);
    return new DataView(b.buffer, b.byteOffset).getBigUint64(0, true) === MARKER;
  }, p.ctx.waitMs * 2);
  // A suspended guest dirties nothing (upstream skips this half too).
  if (suspendsGuest(p)) return;
  const watched = MARKER_OFFSET - 1024;
  const first = (await p.src.readRam(watched, 1))[0];
  await p.wait("the source to dirty an already-sent page", async () => {
    return (await p.src.readRam(watched, 1))[0] !== first;
  });
}

/** Two guests' RAM must be equal page by page; `what` opens the failure message. */
export async function expectRamEqual(a: RamSource, b: RamSource, what: string): Promise<void> {
  const ram = await compareRam(a, b);
  if (ram.mismatches > 0) {
    throw new FlowError(
      `${what} differs in ${ram.mismatches} page(s) between ${a.name} and ${b.name}:\n  ${
        ram.lines.join("\n  ")
      }`,
    );
  }
}

/**
 * Two sides' devices must be equal field by field, where the world can read them (else the log says
 * why they were not compared); `prefix` opens the failure message.
 */
export async function expectDevicesEqual(
  p: MigrationPair,
  a: Side,
  b: Side,
  names: [string, string],
  prefix = "",
  alsoSkip: readonly UncomparedField[] = [],
): Promise<void> {
  const [da, db] = await Promise.all([a.deviceState(), b.deviceState()]);
  if (isUnavailable(da)) return p.ctx.log(`device state not compared: ${da.unavailable}`);
  if (isUnavailable(db)) return p.ctx.log(`device state not compared: ${db.unavailable}`);
  const skip = [...(a.uncomparedFields ?? []), ...(b.uncomparedFields ?? []), ...alsoSkip];
  const [ma, mb] = [withoutFields(da, skip), withoutFields(db, skip)];
  const skipped = [...new Set([...ma.skipped, ...mb.skipped])];
  if (skipped.length) p.ctx.log(`device fields not compared:\n  ${skipped.join("\n  ")}`);
  const diff = compareDeviceState(ma.state, mb.state, names);
  if (diff.length) throw new FlowError(`${prefix}device state differs:\n  ${diff.join("\n  ")}`);
}

/** The fields an older source's release does not send, as device-comparison rules naming each one. */
export function sourceLacksRules(p: MigrationPair): UncomparedField[] {
  return p.sourceLacks.map((l) =>
    exactField(l.device, l.field, `not in the source's release (${l.since}): the target keeps its own value`)
  );
}

/**
 * Cross-version from an older source: each field the source's release does not send holds on the target
 * what the target held before the migration (its own value, not a byte of someone else's data).
 */
export async function expectTargetKeptLackedFields(p: MigrationPair): Promise<void> {
  const before = p.targetBefore;
  if (!p.sourceLacks.length || before === null) return;
  const after = await p.dst.deviceState();
  if (isUnavailable(before) || isUnavailable(after)) return;
  const wrong = changedFields(p.sourceLacks, before, after);
  if (wrong.length) {
    throw new FlowError(
      `target fields the source's release does not send changed in the migration:\n  ${wrong.join("\n  ")}`,
    );
  }
}

/**
 * The side's guest runs: for the a-b guest its pattern advances; then it is stopped, must stay stopped,
 * and must pass check_guests_ram. `resume` lets it run again afterwards.
 */
export async function checkGuestRuns(
  p: MigrationPair,
  side: Side,
  opts: { resume?: boolean } = {},
): Promise<void> {
  if (!isAbGuest(p)) return await checkProgramRuns(p, side, opts);
  const first = (await side.readRam(AB_START, 1))[0];
  await p.wait(
    `${side.name}'s a-b pattern to advance`,
    async () => (await side.readRam(AB_START, 1))[0] !== first,
  );
  await side.qmp.execute("stop");
  const a = (await side.readRam(AB_START, 1))[0];
  await p.sleep(50);
  const b = (await side.readRam(AB_START, 1))[0];
  if (a !== b) throw new FlowError(`${side.name} guest still runs after 'stop' (byte went ${a} -> ${b})`);
  const report = checkGuestsRam(await side.firstBytes(AB_START, AB_END), AB_START);
  if (report.bad) {
    throw new FlowError(
      `${side.name}: check_guests_ram found ${report.bad} bad page(s):\n  ${report.lines.join("\n  ")}`,
    );
  }
  if (opts.resume) await side.qmp.execute("cont");
}

/**
 * A guest program's heartbeat advances, then stops with the guest, where the world keeps one (a QEMU
 * guest program; the model's guests are checked through their CPU state instead).
 */
async function checkProgramRuns(p: MigrationPair, side: Side, opts: { resume?: boolean }): Promise<void> {
  const first = await side.guestProgress?.();
  if (first === undefined || first === null) return;
  await p.wait(`${side.name}'s guest program to advance its heartbeat (it was ${first})`, async (see) => {
    const now = await side.guestProgress!();
    see(`the heartbeat reads ${now}`);
    return now !== first;
  });
  await side.qmp.execute("stop");
  const a = await side.guestProgress!();
  await p.sleep(50);
  const b = await side.guestProgress!();
  if (a !== b) {
    throw new FlowError(`${side.name} guest still runs after 'stop' (heartbeat went ${a} -> ${b})`);
  }
  if (opts.resume) await side.qmp.execute("cont");
}

/**
 * After a successful migration: the paused destination equals the stopped source page by page and device
 * by device; then it runs (serial B, the pattern advances) and, for a-b, passes check_guests_ram.
 */
export async function checkMigratedGuest(p: MigrationPair): Promise<void> {
  await expectRamEqual(p.src.ram(), p.dst.ram(), "guest RAM");
  await expectDevicesEqual(p, p.src, p.dst, ["source", "target"], "", sourceLacksRules(p));
  await expectTargetKeptLackedFields(p);
  if (p.dst.foreignGuest) return p.ctx.log(`the target's run not checked: ${p.dst.foreignGuest}`);
  const since = p.dst.qmp.events.length;
  await p.dst.qmp.execute("cont");
  await p.waitEvent(p.dst, "RESUME", undefined, since);
  if (suspendsGuest(p)) await wakeSuspendedTarget(p);
  if (!isAbGuest(p)) return await checkProgramRuns(p, p.dst, {});
  await waitSerialB(p, p.dst);
  // migrate_end: the destination is running (its first test byte changes), then stop it and check.
  await checkGuestRuns(p, p.dst);
}

/**
 * A guest migrated while suspended resumes into "suspended" (QEMU 9.0's fix: before it, the migration
 * woke it): it must not run until system_wakeup, after which it boots again ('A', then 'B').
 */
export async function wakeSuspendedTarget(p: MigrationPair): Promise<void> {
  const st = await p.dst.qmp.execute<{ status: string; running: boolean }>("query-status");
  if (st.status !== "suspended" || st.running) {
    throw new FlowError(
      `the target resumed into '${st.status}' (running: ${st.running}), expected 'suspended': the guest ` +
        "was suspended on the source, and a migration must not wake it (the run state in the global state)",
    );
  }
  const since = p.dst.qmp.events.length;
  await p.dst.qmp.execute("system_wakeup");
  await p.waitEvent(p.dst, "WAKEUP", undefined, since);
}

/** Every page of the source's RAM written with seeded bytes, and marked dirty (x-test-ram-fill in the model). */
export async function fillRam(p: MigrationPair, seed: number): Promise<void> {
  if (p.src.fillRam) return await p.src.fillRam(seed);
  await p.src.qmp.execute("x-test-ram-fill", { seed }, { timeoutMs: 60_000 });
}
