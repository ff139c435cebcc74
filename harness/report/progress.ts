/**
 * The live progress line of a running case: one line from its latest samples (status, pass, MB sent,
 * remaining, dirty rate, bandwidth; the checkpoint count in COLO), redrawn in place on a terminal once
 * the case has run a while, and never written when the output is not a terminal (CI logs stay clean).
 */
import type { PollSample, Sample } from "./sampler.ts";

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** The latest poll of `side`, if any. */
function latest(samples: readonly Sample[], side: PollSample["side"]): PollSample | undefined {
  for (let i = samples.length - 1; i >= 0; i--) {
    const s = samples[i];
    if (s.kind === "poll" && s.side === side) return s;
  }
  return undefined;
}

/** One line for a running case (pure: the samples so far and the time since the case started). */
export function progressText(caseName: string, samples: readonly Sample[], elapsedMs: number): string {
  const parts = [caseName, `${(elapsedMs / 1000).toFixed(1)} s`];
  const src = latest(samples, "source");
  const dst = latest(samples, "target");
  const main = src ?? dst;
  if (!main) return [...parts, "starting"].join("  ");
  parts.push(main.status);
  if (dst && src && dst.status !== src.status) parts.push(`(target ${dst.status})`);
  const ram = main.ram;
  if (ram?.dirtySyncCount !== undefined) parts.push(`pass ${ram.dirtySyncCount}`);
  if (ram?.transferred !== undefined) parts.push(`sent ${mb(ram.transferred)}`);
  if (ram?.remaining !== undefined && main.status !== "colo") parts.push(`remaining ${mb(ram.remaining)}`);
  if (ram?.dirtyPagesRate) parts.push(`dirty ${Math.round(ram.dirtyPagesRate)} pages/s`);
  if (ram?.mbps) parts.push(`${ram.mbps.toFixed(0)} Mbps`);
  if (src?.checkpoints !== undefined) parts.push(`checkpoints ${src.checkpoints}`);
  return parts.join("  ");
}

export interface ProgressOptions {
  /** Nothing is drawn before a case has run this long (default 2 s: short cases never flicker). */
  afterMs?: number;
  /** At most one redraw per this many ms of the case (default 250). */
  everyMs?: number;
  /** The terminal's width, to cut the line (default: no cut). */
  columns?: () => number;
}

/** `\r` and erase-line: the next text replaces the line in place. */
export const CLEAR_LINE = "\r\x1b[2K";

/**
 * Draws the progress line. `write` gets raw text (no newline); with `isTerminal` false every call is a
 * no-op. `done()` erases the line, so the case's own result line prints where it was.
 */
export class ProgressLine {
  readonly #write: (text: string) => void;
  readonly #isTerminal: boolean;
  readonly #afterMs: number;
  readonly #everyMs: number;
  readonly #columns: (() => number) | undefined;
  #shown = false;
  #case = "";
  #lastAt = -Infinity;

  constructor(write: (text: string) => void, isTerminal: boolean, opts: ProgressOptions = {}) {
    this.#write = write;
    this.#isTerminal = isTerminal;
    this.#afterMs = opts.afterMs ?? 2000;
    this.#everyMs = opts.everyMs ?? 250;
    this.#columns = opts.columns;
  }

  update(caseName: string, samples: readonly Sample[], elapsedMs: number): void {
    if (!this.#isTerminal || elapsedMs < this.#afterMs) return;
    if (caseName !== this.#case) {
      this.#case = caseName;
      this.#lastAt = -Infinity;
    }
    if (elapsedMs - this.#lastAt < this.#everyMs) return;
    this.#lastAt = elapsedMs;
    let text = progressText(caseName, samples, elapsedMs);
    const cols = this.#columns?.();
    // One column spare: a line that fills the terminal exactly wraps on some terminals.
    if (cols && text.length >= cols) text = text.slice(0, Math.max(0, cols - 2)) + "…";
    this.#write(CLEAR_LINE + text);
    this.#shown = true;
  }

  /** Erases the line if one is shown; the next case starts afresh. */
  done(): void {
    if (this.#shown) this.#write(CLEAR_LINE);
    this.#shown = false;
    this.#case = "";
    this.#lastAt = -Infinity;
  }
}
