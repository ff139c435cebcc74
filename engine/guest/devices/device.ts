/** A device with migratable state: one FULL section per device, identified by (idstr, instance id). */
import type { VMStateDescription } from "../../vmstate.ts";

export interface Device {
  readonly idstr: string;
  readonly instanceId: number;
  // deno-lint-ignore no-explicit-any -- each device's vmsd is typed over its own state shape
  readonly vmsd: VMStateDescription<any>;
  /** The object vmstate saves from and loads into (refreshed from registers by the vmsd's pre_save). */
  readonly state: Record<string, unknown>;
  /** Power-on state (QEMU's device reset). */
  reset(): void;
}
