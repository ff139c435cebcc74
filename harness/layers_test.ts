/**
 * The layers of ARCHITECTURE.md, held against the code: every relative import of every module in the
 * tree is read, and the rules of what may import what are checked, plus no import circle anywhere. A
 * change that breaks a rule fails here with the file and the import that broke it.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g;

/** Every .ts file under the tree's code folders, as a path relative to the root. */
async function sources(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(new URL(dir, ROOT))) {
      const path = `${dir}${e.name}`;
      if (e.isDirectory) await walk(`${path}/`);
      else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
    }
  };
  for (const top of ["engine/", "harness/", "cases/", "tools/", "fixtures/"]) await walk(top);
  return out.sort();
}

/** The tree's import graph: file → the files it imports (relative specifiers only). */
async function importGraph(): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const file of await sources()) {
    const text = await Deno.readTextFile(new URL(file, ROOT));
    const targets: string[] = [];
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2];
      targets.push(new URL(spec, new URL(file, ROOT)).pathname.slice(ROOT.pathname.length));
    }
    graph.set(file, targets);
  }
  return graph;
}

const isTest = (f: string) => f.endsWith("_test.ts");
const under = (f: string, dir: string) => f.startsWith(dir);

/** A rule: files it applies to must not import targets it forbids. */
interface Rule {
  what: string;
  applies(file: string, graph: Map<string, string[]>): boolean;
  /** Whether `file` may not import `target`. */
  forbids(target: string, file: string): boolean;
}

/** The files `roots` load, directly or not. */
function reachable(graph: Map<string, string[]>, roots: string[]): Set<string> {
  const seen = new Set<string>();
  const visit = (f: string) => {
    if (seen.has(f)) return;
    seen.add(f);
    for (const t of graph.get(f) ?? []) visit(t);
  };
  roots.forEach(visit);
  return seen;
}

/** What an engine process loads (its main module and its vCPU worker). */
const ENGINE_ROOTS = ["engine/main.ts", "engine/guest/vcpu_worker.ts"];

const CORE = [
  "harness/framework.ts",
  "harness/family.ts",
  "harness/migration_qmp.ts",
  "harness/migration_util.ts",
  "harness/expect.ts",
  "harness/case.ts",
  "harness/validate.ts",
  "harness/select.ts",
  "harness/peer.ts",
];
const WORLD_IMPLEMENTATIONS = (t: string) => under(t, "harness/world/") && t !== "harness/world/world.ts";
const REGISTRY = "harness/families/mod.ts";
/** The family folder a file is in ("harness/families/colo/"), or null. */
const familyDir = (f: string) => /^harness\/families\/[^/]+\//.exec(f)?.[0] ?? null;
/** A family's record types (harness/families/<family>/case.ts): data others may name. */
const isRecordType = (t: string) => /^harness\/families\/[^/]+\/case\.ts$/.test(t);

const ABOVE_THE_ENGINE = (t: string) => under(t, "harness/") || under(t, "cases/") || under(t, "tools/");

const RULES: Rule[] = [
  {
    what: "the engine process (the system under test) loads nothing of the harness, the cases or the tools",
    applies: (f, graph) => reachable(graph, ENGINE_ROOTS).has(f),
    forbids: ABOVE_THE_ENGINE,
  },
  {
    what: "nothing under engine/, its tests and test helpers included, imports the harness, the cases or " +
      "the tools",
    applies: (f) => under(f, "engine/"),
    forbids: ABOVE_THE_ENGINE,
  },
  {
    what:
      "the harness core names no family: it imports nothing of harness/families/ (the registry reads them)",
    applies: (f) =>
      !isTest(f) && (CORE.includes(f) || under(f, "harness/world/") || under(f, "harness/check/")),
    forbids: (t) => under(t, "harness/families/"),
  },
  {
    what: "a flow never asks which world it runs in: it imports the world interface only",
    applies: (f) => under(f, "harness/families/") && !isTest(f),
    forbids: WORLD_IMPLEMENTATIONS,
  },
  {
    what: "one folder per family: a family imports the core, not another family (only the registry does)",
    applies: (f) => familyDir(f) !== null,
    forbids: (t, f) => under(t, "harness/families/") && familyDir(t) !== familyDir(f),
  },
  {
    what: "outside its folder a family is reached through the registry (or named by its record type)",
    applies: (f) => !isTest(f) && !under(f, "harness/families/"),
    forbids: (t) => under(t, "harness/families/") && t !== REGISTRY && !isRecordType(t),
  },
  {
    what: "the case tables are data: they import record types and the registry's validator, never a flow, " +
      "world or runner",
    applies: (f) => under(f, "cases/") && !isTest(f),
    forbids: (t) =>
      under(t, "harness/") && !["harness/case.ts", REGISTRY].includes(t) && !isRecordType(t) ||
      under(t, "tools/"),
  },
  {
    what: "the harness library does not import the case tables (only the matrix CLI and tests do)",
    applies: (f) => under(f, "harness/") && !isTest(f) && f !== "harness/matrix.ts",
    forbids: (t) => under(t, "cases/"),
  },
  {
    what: "nothing imports a test file",
    applies: () => true,
    forbids: isTest,
  },
];

Deno.test("layers: every import follows the rules of ARCHITECTURE.md", async () => {
  const graph = await importGraph();
  assert.ok(graph.size > 100, `read only ${graph.size} files`);
  const broken: string[] = [];
  for (const [file, targets] of graph) {
    for (const rule of RULES) {
      if (!rule.applies(file, graph)) continue;
      for (const t of targets) if (rule.forbids(t, file)) broken.push(`${file} imports ${t}: ${rule.what}`);
    }
  }
  assert.deepEqual(broken, []);
});

/** The import circles of a graph, each as the path that closes it (Tarjan's components of size > 1). */
export function importCircles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

Deno.test("layers: no import circle anywhere in the tree", async () => {
  assert.deepEqual(importCircles(await importGraph()), []);
});

Deno.test("layers: the circle finder finds a circle and the rules catch a forbidden import", () => {
  // The checks above must be able to fail: a two-file circle and a self-import are found.
  const g = new Map([["a.ts", ["b.ts"]], ["b.ts", ["a.ts", "c.ts"]], ["c.ts", []], ["d.ts", ["d.ts"]]]);
  assert.deepEqual(importCircles(g), [["a.ts", "b.ts"], ["d.ts"]]);
  const broken = (file: string, target: string, graph: Map<string, string[]> = g) =>
    RULES.filter((r) => r.applies(file, graph) && r.forbids(target, file)).length;
  assert.equal(broken("harness/families/colo/flow.ts", "harness/world/qemu_process.ts"), 1);
  const engine = new Map([["engine/main.ts", ["engine/ram.ts"]], ["engine/ram.ts", ["harness/matrix.ts"]]]);
  // What the engine process loads breaks both engine rules; an engine test, the one for all of engine/.
  assert.equal(broken("engine/ram.ts", "harness/matrix.ts", engine), 2);
  assert.equal(broken("engine/ram_test.ts", "tools/analyze/source.ts", engine), 1);
  // The core names no family; a family names no other family; the others go through the registry.
  assert.equal(broken("harness/framework.ts", "harness/families/colo/mod.ts"), 2);
  assert.equal(broken("harness/world/qemu.ts", "harness/families/mod.ts"), 1);
  assert.equal(broken("harness/families/colo/flow.ts", "harness/families/precopy/flow.ts"), 1);
  assert.equal(broken("harness/families/colo/flow.ts", "harness/families/colo/checks.ts"), 0);
  assert.equal(broken("harness/families/colo/flow.ts", "harness/families/mod.ts"), 1);
  assert.equal(broken("harness/runner.ts", "harness/families/mod.ts"), 0);
  assert.equal(broken("harness/runner.ts", "harness/families/colo/flow.ts"), 1);
  assert.equal(broken("cases/colo.ts", "harness/families/colo/case.ts"), 0);
  assert.equal(broken("cases/colo.ts", "harness/families/colo/flow.ts"), 2);
});
