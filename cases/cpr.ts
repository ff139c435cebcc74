/**
 * The cpr modes (upstream cpr-tests.c): cpr-reboot, a QEMU stopped, saved and restarted from the image,
 * its RAM kept in shared memory rather than in the file; cpr-transfer, a new QEMU started beside the old
 * one and handed the descriptors of its RAM on a cpr channel. (cpr-exec is QEMU 10.2's.)
 */
import type { MigrationCase } from "../harness/families/mod.ts";

const CPR_REBOOT = { mode: "cpr-reboot" as const };
const CPR_TRANSFER = { mode: "cpr-transfer" as const };

export const CPR_CASES: MigrationCase[] = [
  {
    name: "/migration/mode/reboot",
    tier: "full",
    flow: "file",
    memType: "shmem",
    caps: ["x-ignore-shared"],
    srcParams: CPR_REBOOT,
    dstParams: CPR_REBOOT,
    stopSrc: true,
    why: "cpr-reboot saves a stopped VM to a file while its RAM stays in shared memory: the file must " +
      "hold no guest page, and the restarted QEMU, mapping the same memory, must resume the same guest",
  },
  {
    name: "/migration/mode/reboot/live",
    tier: "full",
    flow: "file",
    memType: "shmem",
    caps: ["x-ignore-shared"],
    srcParams: CPR_REBOOT,
    dstParams: CPR_REBOOT,
    stopSrc: false,
    why: "cpr-reboot of a running guest: the VM must stop before the first page is saved (a RAM image " +
      "older than the devices resumes a guest whose memory and devices disagree)",
  },
  {
    name: "/migration/mode/reboot/private-ram",
    tier: "full",
    flow: "file",
    srcParams: CPR_REBOOT,
    dstParams: CPR_REBOOT,
    stopSrc: false,
    why: "cpr-reboot without shared memory: the RAM goes into the file like any migration's, and the " +
      "running guest still stops first",
  },
  {
    name: "/migration/mode/reboot/postcopy",
    tier: "full",
    flow: "precopy",
    caps: ["postcopy-ram"],
    srcParams: CPR_REBOOT,
    expect: "qmp-error",
    error: /Cannot use postcopy with CPR/,
    why: "cpr-reboot with postcopy: the migrate command must be refused (a restarted QEMU cannot fetch " +
      "pages from a source that is gone)",
  },
  {
    name: "/migration/mode/transfer",
    tier: "full",
    flow: "cpr-transfer",
    memType: "memfd",
    auxRamShare: true,
    srcParams: CPR_TRANSFER,
    why: "cpr-transfer hands the new process every RAM block as a descriptor (the CPR state) and sends " +
      "no page: a block not passed, or mapped as fresh memory, or a page sent anyway, gives a guest that " +
      "differs or a refused stream",
  },
  {
    name: "/migration/mode/transfer/defer",
    tier: "full",
    flow: "cpr-transfer",
    memType: "memfd",
    auxRamShare: true,
    srcParams: CPR_TRANSFER,
    defer: true,
    why: "the target hangs up the cpr channel only once migrate-incoming has it listening: a source that " +
      "connects the main channel before that fails",
  },
  {
    name: "/migration/mode/transfer/bad/no-cpr-channel",
    tier: "full",
    flow: "precopy",
    srcParams: CPR_TRANSFER,
    expect: "qmp-error",
    error: /missing 'cpr' migration channel/,
    why: "mode cpr-transfer without a cpr channel must be refused by migrate, before anything starts",
  },
];
