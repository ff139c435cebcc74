/**
 * Stream capture (`x-test-capture`): the bytes a source writes on its main channel, teed into a file as
 * they go on the wire (after any byte fault acted), so a socket migration can be read afterwards by
 * `deno task analyze` like a `file:` one. QEMU has no such command; it is test support, apart from the
 * model, which only lets the main channel's link pass through `OutgoingFaultHooks.mainChannel`.
 */
import type { Link } from "../transport/link.ts";

/**
 * A link that also writes everything written to it into `path`: the first write of the migration
 * replaces the file, the later ones append, so the file holds one whole main-channel stream.
 */
export class CaptureLink implements Link {
  #started = false;

  constructor(readonly inner: Link, readonly path: string) {}

  get description(): string {
    return this.inner.description;
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.inner.read(p);
  }

  async write(p: Uint8Array): Promise<void> {
    const append = this.#started;
    this.#started = true;
    // Both must be done before the writer reuses `p` (it double-buffers), whichever fails first.
    const [file, wire] = await Promise.allSettled([
      Deno.writeFile(this.path, p, { append }),
      this.inner.write(p),
    ]);
    if (wire.status === "rejected") throw wire.reason;
    if (file.status === "rejected") {
      // A truncated capture must not pass for a whole one: the migration says why it stopped.
      throw new Error(`x-test-capture: cannot write ${this.path}: ${String(file.reason)}`);
    }
  }

  close(): void {
    this.inner.close();
  }
}

/** Checks that the engine may write `path` (its run directory), leaving an empty file there. */
export async function prepareCapture(path: string): Promise<void> {
  await Deno.writeFile(path, new Uint8Array());
}
