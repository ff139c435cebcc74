/**
 * A child process the harness owns (an engine or a QEMU): stderr kept, exit status tracked, and always
 * reaped — SIGTERM first (a clean exit), SIGKILL if it lingers.
 */
export class Child {
  readonly #child: Deno.ChildProcess;
  #stderr = "";
  readonly #stderrDone: Promise<void>;
  #status: Deno.CommandStatus | null = null;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(readonly name: string, binary: string, args: string[], env: Record<string, string> = {}) {
    this.#child = new Deno.Command(binary, { args, stdin: "null", stdout: "null", stderr: "piped", env })
      .spawn();
    this.#stderrDone = this.#collect(this.#child.stderr);
    this.status = this.#child.status.then((s) => (this.#status = s));
  }

  async #collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) this.#stderr += chunk;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Exit status once the process ended, else null. */
  get exitStatus(): Deno.CommandStatus | null {
    return this.#status;
  }

  /** Waits for the process to exit on its own (e.g. a destination quitting after a failed load). */
  async waitExit(timeoutMs: number): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.status,
        new Promise<never>((_, rej) =>
          timer = setTimeout(
            () => rej(new Error(`${this.name}: did not exit within ${timeoutMs} ms`)),
            timeoutMs,
          )
        ),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit status once stderr is drained. */
  async terminate(graceMs: number): Promise<Deno.CommandStatus> {
    if (!this.#status) {
      this.#signal("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const lingering = await Promise.race([
        this.status.then(() => false),
        new Promise<boolean>((r) => timer = setTimeout(() => r(true), graceMs)),
      ]);
      clearTimeout(timer);
      if (lingering) this.#signal("SIGKILL");
    }
    const status = await this.status;
    await this.#stderrDone;
    return status;
  }

  /** SIGKILL now (fault injection: the peer dies). */
  async sigkill(): Promise<Deno.CommandStatus> {
    this.#signal("SIGKILL");
    return await this.status;
  }

  #signal(sig: Deno.Signal): void {
    try {
      this.#child.kill(sig);
    } catch {
      // Already exited.
    }
  }
}

/** What the harness needs of an engine or a QEMU process, over the Child it owns. */
export abstract class SpawnedProcess {
  protected abstract readonly child: Child;
  abstract readonly name: string;

  get stderr(): string {
    return this.child.stderr;
  }

  /** Exit status once the process ended, else null. */
  get exitStatus(): Deno.CommandStatus | null {
    return this.child.exitStatus;
  }

  /** Waits for the process to exit on its own (e.g. a destination quitting after a failed load). */
  waitExit(timeoutMs: number): Promise<Deno.CommandStatus> {
    return this.child.waitExit(timeoutMs);
  }

  /** SIGKILL now (fault injection: the peer dies). */
  sigkill(): Promise<Deno.CommandStatus> {
    return this.child.sigkill();
  }
}
