/**
 * The registry: every case reaches its family, a flow name belongs to one family, and what a family
 * declares of the worlds and the pair is what the worlds and the pair get.
 */
import assert from "node:assert/strict";
import { ALL_CASES } from "../../cases/all.ts";
import {
  cannotRunIn,
  caseNeeds,
  FLOW_NAMES,
  flowOf,
  indexFlows,
  lookupFlow,
  type MigrationCase,
  pairFamily,
  validateCases,
} from "./mod.ts";
import { CaseTableError } from "../validate.ts";
import { simWorld } from "../world/sim.ts";
import { engineWorld } from "../world/engine.ts";

function named(name: string): MigrationCase {
  const c = ALL_CASES.find((c) => c.name === name);
  assert.ok(c, `no case ${name}`);
  return c;
}

Deno.test("registry: every case's flow has a descriptor; a flow name belongs to one family", () => {
  for (const c of ALL_CASES) assert.equal(flowOf(c).flow, c.flow);
  assert.equal(new Set(FLOW_NAMES).size, FLOW_NAMES.length);
  assert.equal(lookupFlow("no-such-flow"), undefined);
  const precopy = lookupFlow("precopy")!;
  assert.throws(() => indexFlows([precopy, precopy]), /two families declare the flow 'precopy'/);
  assert.throws(
    () =>
      validateCases([
        { ...named("/migration/precopy/unix/plain"), flow: "no-such-flow" } as unknown as MigrationCase,
      ]),
    (e: unknown) => e instanceof CaseTableError && /flow: unknown flow 'no-such-flow'/.test(e.message),
  );
});

Deno.test("registry: a family's needs reach the worlds (held moments, faults, the simulation's limits)", () => {
  const kill = named("/migration/colo/plain/kill-primary/apply-middle");
  assert.deepEqual(caseNeeds(kill), {
    heldAt: "killing the primary at colo-apply-middle",
    heldOnWire: true,
    coloPair: true,
  });
  // A failover during the apply has no place on the wire: the secondary must be held mid-apply.
  assert.equal(caseNeeds(named("/migration/colo/plain/secondary_failover_during_apply")).heldOnWire, false);
  const file = caseNeeds(named("/migration/precopy/file"));
  assert.deepEqual(file.qemu?.map((n) => `${n.side}:${n.kind}:${n.name}`), [
    "src:transport:file",
    "dst:transport:file",
  ]);
  // file: paths live in memory in the simulation; the analyzer, a process, does not run there.
  assert.equal(cannotRunIn(simWorld, named("/migration/precopy/file")), null);
  assert.match(cannotRunIn(simWorld, named("/migration/analyze-script"))!, /analyzer runs as a process/);
  assert.equal(cannotRunIn(simWorld, kill), null);
  assert.equal(cannotRunIn(engineWorld, named("/migration/precopy/file")), null);
  // An interleaving the case must bring about: the simulation schedules it, real processes only by chance.
  const window = named("/migration/postcopy/faults/request-crosses-page");
  assert.match(
    cannotRunIn(engineWorld, window)!,
    /request-crosses-page: between real processes .* --backend sim/,
  );
  assert.equal(cannotRunIn(simWorld, window), null);
  // A fault the wire proxy cannot carry: the model's hooks (wire faults need no x-test hook).
  const faulty = named("/migration/bad_stream/unknown_section");
  assert.deepEqual(caseNeeds(faulty).faults, ["unknown-section"]);
  assert.deepEqual(caseNeeds(named("/migration/precopy/unix/plain")).faults, []);
  // A wire fault travels through the wire proxy in any world that has one.
  assert.deepEqual(caseNeeds(named("/migration/bad_stream/magic")).faults, []);
});

Deno.test("registry: the pair gets its family's hooks (socket, COLO pair, final queries)", () => {
  const colo = pairFamily(named("/migration/colo/plain/primary_failover"));
  assert.equal(colo.needs.coloPair, true);
  assert.deepEqual(colo.hooks.finalQueries, ["query-colo-status"]);
  const tcp = named("/migration/precopy/tcp/plain");
  assert.equal(pairFamily(tcp).hooks.socket?.(tcp)?.transport, "tcp");
  const file = named("/migration/precopy/file");
  assert.equal(pairFamily(file).hooks.socket?.(file) ?? null, null);
  assert.equal(pairFamily(file).needs.coloPair, undefined);
});
