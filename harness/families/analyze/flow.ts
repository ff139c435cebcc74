/**
 * /migration/analyze-script: the source (with a uuid and validate-uuid) saves to a file, then the stream
 * analyzer (`deno task analyze`, run as its own process as upstream runs analyze-migration.py) must
 * parse it: the uuid from the configuration section, and every device field equal to the source's state
 * (where the world gives device state; on QEMU, that the devices were parsed at all).
 */
import { errorMessage } from "../../../engine/error.ts";
import { runAnalyzer } from "../../analyzer.ts";
import type { AnalyzeCase } from "./case.ts";
import { compareDeviceState } from "../../check/device_equal.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import { CONVERGE, migrate } from "../../migration_qmp.ts";
import { type DeviceState, isUnavailable } from "../../world/world.ts";

export async function analyzeScriptFlow(p: MigrationPair, c: AnalyzeCase): Promise<void> {
  await p.src.qmp.execute("stop");
  await p.setParams(p.src, CONVERGE);
  await migrate(p, `file:${p.migfile}`);
  await p.waitStatus(p.src, "completed");
  const result = await runAnalyzer(p.migfile, p.dir).catch((e) => {
    throw new FlowError(errorMessage(e));
  }) as { configuration?: { uuid?: string }; devices?: Record<string, unknown> };
  const uuid = result.configuration?.uuid;
  if (c.uuid?.src && uuid !== c.uuid.src) {
    throw new FlowError(`the analyzer read uuid ${uuid}, the source has ${c.uuid.src}`);
  }
  const state = await p.src.deviceState();
  if (isUnavailable(state)) {
    // Real QEMU cannot give its device state field by field, so what is left is upstream's check: the
    // analyzer parsed the whole stream (exit 0, the uuid above) and found the devices in it.
    const found = Object.keys(result.devices ?? {});
    if (!found.length) throw new FlowError("the analyzer found no device sections in the stream");
    p.ctx.log(`analyzer: ${found.length} devices parsed; fields not compared: ${state.unavailable}`);
    return;
  }
  const diffs = analyzerDeviceDiffs(state, result.devices);
  if (diffs.length) {
    throw new FlowError(`analyzer output differs from the source's devices:\n  ${diffs.join("\n  ")}`);
  }
}

/**
 * Where the analyzer's device state (keyed "idstr (instance)") differs from a side's (keyed
 * "idstr/instance"): a device it lacks, or a field whose value differs.
 */
export function analyzerDeviceDiffs(
  state: DeviceState,
  devices: Record<string, unknown> | undefined,
): string[] {
  const diffs: string[] = [];
  for (const [key, fields] of Object.entries(state)) {
    // The idstr may itself hold slashes (QEMU's "0000:00:01.1/ide"): the instance follows the last one.
    const cut = key.lastIndexOf("/");
    const [idstr, instance] = [key.slice(0, cut), key.slice(cut + 1)];
    const parsed = devices?.[`${idstr} (${instance})`] as Record<string, unknown> | undefined;
    if (!parsed) {
      diffs.push(`device ${key} missing from the analyzer's output`);
      continue;
    }
    // Subsections come out as nested objects named after them; fold them into the device's fields.
    const flat: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(parsed)) {
      if (k.includes("/") && typeof v === "object" && v !== null) Object.assign(flat, v);
      else flat[k] = v;
    }
    for (const [k, v] of Object.entries(fields)) {
      if (k in flat) {
        diffs.push(
          ...compareDeviceState(v, flat[k], ["source", "analyzer"]).map((d) =>
            `${key}.${k}${d.slice(d.indexOf(":"))}`
          ),
        );
      }
    }
  }
  return diffs;
}
