/**
 * The global state (QEMU's migration/global_state.c): the run state the source had when the migration
 * completed, so the destination ends in it — a stopped source gives a paused destination whatever its
 * autostart, a suspended one a suspended destination. On the wire, since QEMU 9.0: `size` (the run
 * state's name with its NUL), the name in 32 bytes, has_vm_was_suspended, vm_was_suspended and 66 unused
 * bytes — the 100 zero-padded bytes older releases send, so both directions still load.
 */
import type { Device } from "./guest/devices/device.ts";
import { type RunState, RUNSTATES } from "./runstate.ts";
import type { VMStateDescription } from "./vmstate.ts";

const RUNSTATE_BYTES = 32;
const UNUSED_BYTES = 66;

interface GlobalStateFields extends Record<string, unknown> {
  size: number;
  runstate: Uint8Array;
  has_vm_was_suspended: number;
  vm_was_suspended: number;
  unused: Uint8Array;
}

export class GlobalStateDevice implements Device {
  readonly idstr = "globalstate";
  readonly instanceId = 0;
  readonly state: GlobalStateFields = GlobalStateDevice.#empty();
  readonly vmsd: VMStateDescription<GlobalStateFields>;
  /** What the destination loaded (global_state_received / global_state_get_runstate). */
  received: { runstate: RunState; wasSuspended: boolean } | null = null;

  constructor() {
    this.vmsd = {
      name: "globalstate",
      versionId: 1,
      minimumVersionId: 1,
      fields: [
        { name: "size", type: "uint32" },
        { name: "runstate", type: "buffer", size: RUNSTATE_BYTES },
        { name: "has_vm_was_suspended", type: "uint8" },
        { name: "vm_was_suspended", type: "uint8" },
        { name: "unused", type: "buffer", size: UNUSED_BYTES },
      ],
      postLoad: (s) => {
        // global_state_post_load: a name that does not fit, or is no run state, fails the load.
        if (s.size > RUNSTATE_BYTES || s.size < 1) {
          throw new Error(`globalstate: bad runstate size ${s.size}`);
        }
        const name = new TextDecoder().decode(s.runstate.subarray(0, s.size)).replace(/\0.*$/s, "");
        const runstate = RUNSTATES.find((r) => r === name);
        if (!runstate) throw new Error(`globalstate: unknown runstate '${name}'`);
        this.received = { runstate, wasSuspended: s.has_vm_was_suspended !== 0 && s.vm_was_suspended !== 0 };
      },
    };
  }

  static #empty(): GlobalStateFields {
    return {
      size: 0,
      runstate: new Uint8Array(RUNSTATE_BYTES),
      has_vm_was_suspended: 0,
      vm_was_suspended: 0,
      unused: new Uint8Array(UNUSED_BYTES),
    };
  }

  /** global_state_store: taken just before the source stops for the switchover. */
  store(runstate: RunState, wasSuspended: boolean): void {
    const name = new TextEncoder().encode(runstate);
    this.state.runstate.fill(0);
    this.state.runstate.set(name);
    this.state.size = name.length + 1;
    this.state.has_vm_was_suspended = 1;
    this.state.vm_was_suspended = wasSuspended ? 1 : 0;
  }

  reset(): void {
    Object.assign(this.state, GlobalStateDevice.#empty());
    this.received = null;
  }
}

/**
 * process_incoming_migration_bh's choice: a source that was live (or sent no global state) starts the
 * guest if autostart says so, else it pauses; any other run state is taken as it came.
 */
export function incomingRunstate(g: GlobalStateDevice, autostart: boolean): "start" | RunState {
  const r = g.received;
  if (!r || r.runstate === "running" || r.runstate === "suspended") return autostart ? "start" : "paused";
  return r.runstate;
}
