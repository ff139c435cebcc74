/**
 * Applying a mutant: one exact textual replacement in one file of a copy of the tree. The find text must
 * occur exactly once, so a refactor of the engine that moves or changes the code a mutant names fails
 * the battery loudly instead of silently testing nothing.
 */
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errorMessage } from "../../engine/error.ts";

/** A realistic migration bug: one small change to one place of the engine. */
export interface Mutant {
  /** Short kebab-case name, unique in the battery (`--only NAME`). */
  name: string;
  /** Path from the repository root. */
  file: string;
  /** Text that must occur exactly once in `file`. */
  find: string;
  replace: string;
  /** The bug class QEMU has had that this mirrors, and what it breaks. */
  why: string;
  /** An equivalent change (no observable effect), with the reason: listed, run, left out of the score. */
  equivalent?: string;
  /** In the fixed fast subset that CI runs (`--subset ci`). */
  ci?: boolean;
}

export class PatchError extends Error {}

/** Occurrences of `find` in `text` (non-overlapping). */
export function countOccurrences(text: string, find: string): number {
  if (find === "") return Infinity;
  let n = 0;
  for (let i = text.indexOf(find); i >= 0; i = text.indexOf(find, i + find.length)) n++;
  return n;
}

/** `text` with the one occurrence of `find` replaced; a PatchError unless `find` occurs exactly once. */
export function applyPatch(text: string, m: Pick<Mutant, "name" | "file" | "find" | "replace">): string {
  const n = countOccurrences(text, m.find);
  if (n !== 1) {
    throw new PatchError(
      `mutant ${m.name}: the find text occurs ${n === Infinity ? "(empty)" : n} time(s) in ${m.file}, ` +
        "expected exactly once (the engine changed: update the mutant)",
    );
  }
  if (m.find === m.replace) throw new PatchError(`mutant ${m.name}: find and replace are the same text`);
  // A function replacement, so `$&` and friends in the replacement stay literal.
  return text.replace(m.find, () => m.replace);
}

/**
 * A unified diff of a single contiguous change (what applyPatch makes): one hunk, `context` lines of
 * context either side, headers a/FILE and b/FILE.
 */
export function unifiedDiff(file: string, before: string, after: string, context = 3): string {
  const a = before.split("\n");
  const b = after.split("\n");
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  if (head === a.length && head === b.length) return "";
  let tail = 0;
  while (
    tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]
  ) tail++;
  const from = Math.max(0, head - context);
  const aEnd = a.length - tail;
  const bEnd = b.length - tail;
  const aTo = Math.min(a.length, aEnd + context);
  const bTo = Math.min(b.length, bEnd + context);
  const range = (start: number, len: number) => `${len === 0 ? start : start + 1},${len}`;
  const lines = [
    `--- a/${file}`,
    `+++ b/${file}`,
    `@@ -${range(from, aTo - from)} +${range(from, bTo - from)} @@`,
    ...a.slice(from, head).map((l) => ` ${l}`),
    ...a.slice(head, aEnd).map((l) => `-${l}`),
    ...b.slice(head, bEnd).map((l) => `+${l}`),
    ...a.slice(aEnd, aTo).map((l) => ` ${l}`),
  ];
  return lines.join("\n") + "\n";
}

/** What a full-tier run needs from the tree (no .git, .cache, artifacts). */
export const TREE_ENTRIES = ["deno.json", "deno.lock", "engine", "harness", "cases", "fixtures", "tools"];

/** A copy of the tree under a new temporary directory, with the mutant applied; the caller removes it. */
export async function mutatedCopy(root: string, m: Mutant): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `migtest-mutant-${m.name}-`));
  try {
    for (const e of TREE_ENTRIES) {
      await cp(join(root, e), join(dir, e), {
        recursive: true,
        filter: (src) => !/[/\\](artifacts|\.cache|node_modules)([/\\]|$)/.test(src.slice(root.length)),
      });
    }
    const path = join(dir, m.file);
    await Deno.writeTextFile(path, applyPatch(await Deno.readTextFile(path), m));
    return dir;
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Checks a battery without running it: unique names, files present, every find text exactly once. */
export async function checkBattery(root: string, battery: readonly Mutant[]): Promise<string[]> {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const m of battery) {
    if (seen.has(m.name)) problems.push(`mutant ${m.name}: name used twice`);
    seen.add(m.name);
    if (!/^[a-z0-9][a-z0-9-]*$/.test(m.name)) problems.push(`mutant ${m.name}: name must be kebab-case`);
    if (!m.why.trim()) problems.push(`mutant ${m.name}: missing why`);
    let text;
    try {
      text = await Deno.readTextFile(join(root, m.file));
    } catch {
      problems.push(`mutant ${m.name}: no file ${m.file}`);
      continue;
    }
    try {
      applyPatch(text, m);
    } catch (e) {
      problems.push(errorMessage(e));
    }
  }
  return problems;
}
