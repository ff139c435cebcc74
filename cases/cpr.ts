/**
 * The cpr modes (upstream cpr-tests.c): a QEMU stopped, saved and restarted from the image, its RAM
 * kept in shared memory rather than in the file. cpr-transfer and cpr-exec pass the memory's
 * descriptors to a new QEMU: not modelled (the engine refuses the mode).
 */
import type { MigrationCase } from "../harness/families/mod.ts";

const CPR_REBOOT = { mode: "cpr-reboot" as const };

export const CPR_CASES: MigrationCase[] = [
  {
    name: "/migration/mode/reboot",
    tier: "full",
    flow: "file",
    sharedMemory: true,
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
    sharedMemory: true,
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
];
