/** The worlds by name, and the one MIGTEST_BACKEND selects (default: engine processes). */
import { engineWorld } from "./engine.ts";
import { qemuWorld } from "./qemu.ts";
import { simWorld } from "./sim.ts";
import { engineToQemuWorld, qemuToEngineWorld } from "./mixed.ts";
import { type World, WORLD_NAMES, type WorldName } from "./world.ts";

const WORLDS: Record<WorldName, World> = {
  engine: engineWorld,
  qemu: qemuWorld,
  sim: simWorld,
  "engine-to-qemu": engineToQemuWorld,
  "qemu-to-engine": qemuToEngineWorld,
};

export function isWorldName(name: string): name is WorldName {
  return (WORLD_NAMES as readonly string[]).includes(name);
}

export function worldByName(name: string): World {
  if (!isWorldName(name)) throw new Error(`backend must be one of ${WORLD_NAMES.join("|")}, got '${name}'`);
  return WORLDS[name];
}

/**
 * MIGTEST_BACKEND=engine|qemu|sim, or MIGTEST_WORLD (the same; read when called, so importing this needs
 * no env permission).
 */
export function worldFromEnv(): World {
  return worldByName(Deno.env.get("MIGTEST_WORLD") ?? Deno.env.get("MIGTEST_BACKEND") ?? "engine");
}
