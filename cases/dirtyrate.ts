/**
 * Dirty-rate cases (upstream's /migration/vcpu_dirty_limit in precopy-tests.c), plus what upstream does
 * not cover: each calc-dirty-rate mode on a guest that writes and one that does not, and the commands'
 * refusals of bad input (QEMU 10.0's words).
 */
import type { MigrationCase } from "../harness/families/mod.ts";

const NO_RING = "dirty page limit feature requires KVM with accelerator property 'dirty-ring-size' set'";

export const DIRTYRATE_CASES: MigrationCase[] = [
  {
    // Upstream registers it without the /migration prefix.
    name: "/dirty_limit",
    tier: "full",
    flow: "dirty-limit",
    transport: "unix",
    dirtyRingSize: 4096,
    srcCaps: ["dirty-limit", "pause-before-switchover"],
    why:
      "a migration that does not converge limits the vCPU (dirty-limit), a cancel lifts the limit, a new " +
      "migration applies it again at vcpu-dirty-limit, and the remaining RAM fits the downtime at the end",
  },
  {
    name: "/migration/vcpu_dirty_limit",
    tier: "full",
    flow: "vcpu-dirty-limit",
    dirtyRingSize: 4096,
    why: "set-vcpu-dirty-limit at half the measured rate must bring the vCPU's dirty rate within the limit " +
      "(+ 25 MB/s) by throttling it, and cancel-vcpu-dirty-limit must lift the throttle",
  },
  {
    name: "/migration/dirty_rate/page-sampling",
    tier: "full",
    flow: "dirty-rate",
    measure: { calcTime: 1, expect: "dirty" },
    why: "beyond upstream: page-sampling over a guest that rewrites every page must measure a dirty rate " +
      "(sampled pages hashed at the start and the end)",
  },
  {
    name: "/migration/dirty_rate/page-sampling/idle",
    tier: "full",
    flow: "dirty-rate",
    workload: { kind: "idle" },
    measure: { calcTime: 1, expect: "zero" },
    why: "beyond upstream: a guest that writes nothing measures 0 MB/s (no page counted that did not change)",
  },
  {
    name: "/migration/dirty_rate/dirty-ring",
    tier: "full",
    flow: "dirty-rate",
    dirtyRingSize: 4096,
    measure: { mode: "dirty-ring", calcTime: 1, expect: "dirty" },
    why: "beyond upstream: the dirty-ring mode counts the pages the vCPU pushed onto its ring, per vCPU",
  },
  ...([
    ["calc-time", {
      command: "calc-dirty-rate",
      args: { "calc-time": 0 },
      // QEMU 7.2's words before calc-time-unit came (8.2).
      error: /Calculation time is out of range \[50ms, 60000ms\]\.|calc-time is out of range\[1, 60\]\./,
    }],
    ["sample-pages", {
      command: "calc-dirty-rate",
      args: { "calc-time": 1, "sample-pages": 5 },
      error: /sample-pages is out of range\[128, 16384\]\./,
    }],
    ["sample-pages-mode", {
      command: "calc-dirty-rate",
      args: { "calc-time": 1, mode: "dirty-bitmap", "sample-pages": 512 },
      error: /sample-pages is used only in page-sampling mode/,
    }],
    ["dirty-ring-not-enabled", {
      command: "calc-dirty-rate",
      args: { "calc-time": 1, mode: "dirty-ring" },
      error: /mode dirty-ring is not enabled, use other method instead\./,
    }],
    ["limit-without-ring", {
      command: "set-vcpu-dirty-limit",
      args: { "dirty-rate": 50 },
      error: new RegExp(NO_RING),
    }],
    ["dirty-limit-without-ring", {
      command: "migrate-set-capabilities",
      args: { capabilities: [{ capability: "dirty-limit", state: true }] },
      error: /dirty-limit requires KVM with accelerator property 'dirty-ring-size' set/,
    }],
  ] as const).map(([what, refusal]): MigrationCase => ({
    name: `/migration/dirty_rate/bad/${what}`,
    tier: "full",
    flow: "dirty-rate",
    refusals: [refusal],
    why: `beyond upstream: ${refusal.command} ${JSON.stringify(refusal.args)} refused with QEMU's reason, ` +
      "and the side alive after it",
  })),
];
