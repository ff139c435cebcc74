import { setTimeout as sleep } from "node:timers/promises";
import assert from "node:assert/strict";
import { parseQmpJson } from "./json.ts";
import { QmpError } from "./schema.ts";
import { type QmpCommand, QmpServer, type QmpServerOptions, type QmpTrafficEntry } from "./server.ts";
import {
  formatTranscript,
  QmpClient,
  QmpClosedError,
  QmpCommandError,
  type QmpEvent,
  QmpTimeoutError,
  type QmpTranscriptEntry,
} from "./client.ts";

// ---------------------------------------------------------------------------------------------------
// Fixtures

interface Fixture {
  server: QmpServer;
  path: string;
  dir: string;
  gate: Gate;
}

/** A manually released barrier, so concurrency tests need no sleeps. */
class Gate {
  #waiters: (() => void)[] = [];
  #open = false;
  wait(): Promise<void> {
    if (this.#open) return Promise.resolve();
    return new Promise((r) => this.#waiters.push(r));
  }
  open(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }
}

function commands(gate: Gate): QmpCommand[] {
  return [
    { name: "echo", args: "any", handler: (a) => a },
    {
      name: "typed",
      args: {
        s: { type: "str" },
        i: { type: "int" },
        n: { type: "number", optional: true },
        b: { type: "bool", optional: true },
        a: { type: "array", optional: true },
        o: { type: "object", optional: true },
        e: { type: { enum: ["x", "y"] }, optional: true },
        l: { type: { array: { enum: ["p", "q"] } }, optional: true },
        v: { type: "any", optional: true },
      },
      handler: (a) => ({ got: a }),
    },
    {
      name: "fail",
      handler: () => {
        throw new QmpError("DeviceNotFound", "Device 'x' not found");
      },
    },
    {
      name: "fail-generic",
      handler: () => {
        throw new QmpError("boom");
      },
    },
    {
      name: "throw-plain",
      handler: () => {
        throw new Error("plain failure");
      },
    },
    {
      name: "throw-async",
      handler: async () => {
        await Promise.resolve();
        throw new QmpError("MigrationActive", "async failure");
      },
    },
    { name: "throw-string", handler: () => Promise.reject("just a string") },
    {
      name: "bad-result",
      handler: () => {
        const o: Record<string, unknown> = {};
        o.self = o;
        return o;
      },
    },
    { name: "undef", handler: () => undefined },
    {
      name: "slow",
      handler: async () => {
        await gate.wait();
        return { slow: true };
      },
    },
    { name: "fast", handler: () => ({ fast: true }) },
    { name: "release", handler: () => gate.open() },
    { name: "ping-oob", oob: true, handler: () => ({ pong: true }) },
    {
      name: "hang",
      handler: (_a, ctx) =>
        new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true })),
    },
    {
      name: "emit",
      args: { event: { type: "str" }, data: { type: "object", optional: true } },
      handler: (a, ctx) => ctx.server.emit(a.event as string, a.data as Record<string, unknown> | undefined),
    },
    {
      name: "quit",
      handler: (_a, ctx) => {
        ctx.server.emit("SHUTDOWN", { guest: false, reason: "host-qmp-quit" });
        void ctx.server.close();
      },
    },
    { name: "whoami", handler: (_a, ctx) => ({ client: ctx.clientId, id: ctx.id ?? null, oob: ctx.oob }) },
  ];
}

async function withServer(
  fn: (f: Fixture) => Promise<void>,
  opts: Partial<QmpServerOptions> = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "migtest_qmp_" });
  const path = `${dir}/qmp.sock`;
  const gate = new Gate();
  const server = QmpServer.listen({ path, commands: commands(gate), ...opts });
  try {
    await fn({ server, path, dir, gate });
  } finally {
    gate.open();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function withClient(
  path: string,
  fn: (c: QmpClient) => Promise<void>,
  opts: { name?: string; oob?: boolean; transcript?: QmpTranscriptEntry[] } = {},
): Promise<void> {
  const c = await QmpClient.connect(path, { name: opts.name ?? "src", timeoutMs: 3000, ...opts });
  try {
    await fn(c);
  } finally {
    await c.close();
  }
}

/** A raw socket speaking line-oriented JSON, to control exact bytes on the wire. */
class Raw {
  #buf = "";
  #decoder = new TextDecoder();
  #closed = false;
  private constructor(readonly conn: Deno.Conn) {}

  static async open(path: string): Promise<Raw> {
    return new Raw(await Deno.connect({ transport: "unix", path }));
  }
  static wrap(conn: Deno.Conn): Raw {
    return new Raw(conn);
  }

  /** Next line, raw (including "\r\n" if present), or null at end of stream. */
  async rawLine(timeoutMs = 3000): Promise<string | null> {
    const buf = new Uint8Array(4096);
    while (!this.#buf.includes("\n")) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), timeoutMs)));
      const n = await Promise.race([this.conn.read(buf), timeout]).finally(() => clearTimeout(timer));
      if (n === "timeout") {
        // Closing settles the still pending read, so the failure is not reported as a leak.
        this.close();
        throw new Error(`raw read timed out after ${timeoutMs}ms; buffered: ${JSON.stringify(this.#buf)}`);
      }
      if (n === null) return null;
      this.#buf += this.#decoder.decode(buf.subarray(0, n), { stream: true });
    }
    const i = this.#buf.indexOf("\n");
    const line = this.#buf.slice(0, i + 1);
    this.#buf = this.#buf.slice(i + 1);
    return line;
  }

  async msg(): Promise<Record<string, unknown>> {
    const line = await this.rawLine();
    if (line === null) throw new Error("raw: end of stream");
    return parseQmpJson(line) as Record<string, unknown>;
  }

  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** Reads the greeting and negotiates. */
  async negotiate(enableOob = false): Promise<void> {
    await this.msg();
    await this.send(`{"execute":"qmp_capabilities"${enableOob ? ',"arguments":{"enable":["oob"]}' : ""}}\n`);
    assert.deepEqual(await this.msg(), { return: {} });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
  }
}

async function withRaw(path: string, fn: (r: Raw) => Promise<void>): Promise<void> {
  const r = await Raw.open(path);
  try {
    await fn(r);
  } finally {
    r.close();
  }
}

function genericError(desc: string): Record<string, unknown> {
  return { error: { class: "GenericError", desc } };
}

// ---------------------------------------------------------------------------------------------------
// Protocol

Deno.test("greeting is QEMU-shaped and CRLF terminated; client negotiates", async () => {
  await withServer(async ({ path, server }) => {
    await withRaw(path, async (r) => {
      const line = await r.rawLine();
      assert.ok(line?.endsWith("}\r\n"), `greeting line ${JSON.stringify(line)}`);
      assert.deepEqual(JSON.parse(line!), {
        QMP: {
          version: { qemu: { micro: 0, minor: 2, major: 7 }, package: "migtest" },
          capabilities: ["oob"],
        },
      });
      assert.equal(
        line,
        `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, ` +
          `"package": "migtest"}, "capabilities": ["oob"]}}\r\n`,
      );
    });
    await withClient(path, async (c) => {
      assert.equal(c.greeting.QMP.version.qemu.major, 7);
      assert.equal(c.oob, false);
      assert.equal(server.clientCount, 1);
      assert.deepEqual(await c.execute("whoami"), { client: 2, id: "src-2", oob: false });
    });
    await withClient(path, async (c) => {
      assert.equal(c.oob, true);
      assert.deepEqual(await c.executeOob("ping-oob"), { pong: true });
    }, { oob: true });
  });
});

Deno.test("before negotiation only qmp_capabilities is accepted; afterwards it is refused", async () => {
  await withServer(async ({ path }) => {
    await withRaw(path, async (r) => {
      await r.msg();
      const expecting = {
        error: {
          class: "CommandNotFound",
          desc: "Expecting capabilities negotiation with 'qmp_capabilities'",
        },
      };
      await r.send('{"execute":"fast"}\n');
      assert.deepEqual(await r.msg(), expecting);
      await r.send('{"execute":"no-such-command","id":1}\n');
      assert.deepEqual(await r.msg(), { ...expecting, id: 1 });
      await r.send('{"exec-oob":"ping-oob","id":2}\n');
      assert.deepEqual(await r.msg(), {
        ...genericError("QMP input member 'exec-oob' is unexpected"),
        id: 2,
      });
      await r.send('{"execute":"qmp_capabilities","arguments":{"enable":["bogus"]}}\n');
      assert.deepEqual(await r.msg(), genericError("Parameter 'enable[0]' does not accept value 'bogus'"));
      await r.send('{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}\n');
      assert.deepEqual(await r.msg(), genericError("Invalid parameter type for 'enable', expected: array"));
      await r.send('{"execute":"qmp_capabilities","arguments":{"what":1}}\n');
      assert.deepEqual(await r.msg(), genericError("Parameter 'what' is unexpected"));
      await r.send('{"execute":"qmp_capabilities","id":"n"}\n');
      assert.deepEqual(await r.msg(), { return: {}, id: "n" });
      await r.send('{"execute":"qmp_capabilities"}\n');
      assert.deepEqual(await r.msg(), {
        error: {
          class: "CommandNotFound",
          desc: "Capabilities negotiation is already complete, command ignored",
        },
      });
      await r.send('{"execute":"fast"}\n');
      assert.deepEqual(await r.msg(), { return: { fast: true } });
    });
  });
});

Deno.test("unknown command is CommandNotFound", async () => {
  await withServer(async ({ path }) => {
    await withClient(path, async (c) => {
      const err = await c.execute("foo").then(() => null, (e: unknown) => e);
      assert.ok(err instanceof QmpCommandError);
      assert.equal(err.klass, "CommandNotFound");
      assert.equal(err.desc, "The command foo has not been found");
      assert.equal(err.command, "foo");
      assert.equal(err.side, "src");
      assert.match(err.message, /^src: foo failed: CommandNotFound: The command foo has not been found$/);
      assert.deepEqual(await c.tryExecute("foo"), {
        error: { class: "CommandNotFound", desc: "The command foo has not been found" },
      });
    });
  });
});

Deno.test("arguments are validated with QEMU's messages", async () => {
  await withServer(async ({ path }) => {
    await withClient(path, async (c) => {
      const err = async (args: Record<string, unknown>) => {
        const r = await c.tryExecute("typed", args);
        assert.ok("error" in r, `expected an error for ${JSON.stringify(args)}`);
        assert.equal(r.error.class, "GenericError");
        return r.error.desc;
      };
      assert.equal(await err({ i: 1 }), "Parameter 's' is missing");
      assert.equal(await err({ s: "a" }), "Parameter 'i' is missing");
      assert.equal(await err({ s: 1, i: 1 }), "Invalid parameter type for 's', expected: string");
      assert.equal(await err({ s: "a", i: "1" }), "Invalid parameter type for 'i', expected: integer");
      assert.equal(await err({ s: "a", i: 1.5 }), "Invalid parameter type for 'i', expected: integer");
      assert.equal(await err({ s: "a", i: 1, n: "2" }), "Invalid parameter type for 'n', expected: number");
      assert.equal(await err({ s: "a", i: 1, b: 0 }), "Invalid parameter type for 'b', expected: boolean");
      assert.equal(await err({ s: "a", i: 1, a: {} }), "Invalid parameter type for 'a', expected: array");
      assert.equal(await err({ s: "a", i: 1, o: [] }), "Invalid parameter type for 'o', expected: object");
      assert.equal(await err({ s: "a", i: 1, o: null }), "Invalid parameter type for 'o', expected: object");
      assert.equal(await err({ s: "a", i: 1, e: "z" }), "Parameter 'e' does not accept value 'z'");
      assert.equal(await err({ s: "a", i: 1, e: 3 }), "Invalid parameter type for 'e', expected: string");
      assert.equal(await err({ s: "a", i: 1, l: ["p", "r"] }), "Parameter 'l[1]' does not accept value 'r'");
      assert.equal(await err({ s: "a", i: 1, extra: true }), "Parameter 'extra' is unexpected");
      // Spec members are checked before unexpected ones, as QEMU's visitor does.
      assert.equal(await err({ extra: true, i: 1 }), "Parameter 's' is missing");
      assert.equal(await err({ x: 1 }), "Parameter 's' is missing");
      const r = await c.tryExecute("fast", { x: 1 });
      assert.deepEqual(r, genericError("Parameter 'x' is unexpected"));

      const ok = { s: "a", i: -3, n: 2.5, b: false, a: [1], o: { k: 1 }, e: "y", l: ["q"], v: null };
      assert.deepEqual(await c.execute("typed", ok), { got: ok });
      assert.deepEqual(await c.execute("typed", { s: "", i: 0, n: 7 }), { got: { s: "", i: 0, n: 7 } });
    });
  });
});

Deno.test("handler failures become error replies and the server keeps going", async () => {
  await withServer(async ({ path }) => {
    await withClient(path, async (c) => {
      assert.deepEqual(await c.tryExecute("fail"), {
        error: { class: "DeviceNotFound", desc: "Device 'x' not found" },
      });
      assert.deepEqual(await c.tryExecute("fail-generic"), genericError("boom"));
      assert.deepEqual(await c.tryExecute("throw-plain"), genericError("plain failure"));
      assert.deepEqual(await c.tryExecute("throw-async"), {
        error: { class: "MigrationActive", desc: "async failure" },
      });
      assert.deepEqual(await c.tryExecute("throw-string"), genericError("just a string"));
      const bad = await c.tryExecute("bad-result");
      assert.ok("error" in bad && bad.error.class === "GenericError" && /cyclic/.test(bad.error.desc));
      assert.deepEqual(await c.execute("undef"), {});
      assert.deepEqual(await c.execute("fast"), { fast: true });
    });
  });
  assert.equal(new QmpError("d").klass, "GenericError");
  assert.equal(new QmpError("K", "d").desc, "d");
});

Deno.test("a slow handler does not block later commands; replies come in completion order", async () => {
  await withServer(async ({ path }) => {
    await withClient(path, async (c) => {
      let slowDone = false;
      const slow = c.execute("slow").then((r) => {
        slowDone = true;
        return r;
      });
      assert.deepEqual(await c.execute("fast"), { fast: true });
      assert.equal(slowDone, false);
      await c.execute("release");
      assert.deepEqual(await slow, { slow: true });
    });
  });
  await withServer(async ({ path }) => {
    await withRaw(path, async (r) => {
      await r.negotiate();
      await r.send(
        '{"execute":"slow","id":"s"}{"execute":"fast","id":"f"}\n{"execute":"release","id":"r"}\n',
      );
      assert.deepEqual(await r.msg(), { return: { fast: true }, id: "f" });
      const rest = [await r.msg(), await r.msg()].sort((a, b) => String(a.id).localeCompare(String(b.id)));
      assert.deepEqual(rest, [{ return: {}, id: "r" }, { return: { slow: true }, id: "s" }]);
    });
  });
});

Deno.test("exec-oob runs oob-capable commands only, and only when negotiated", async () => {
  await withServer(async ({ path }) => {
    await withClient(path, async (c) => {
      const slow = c.execute("slow");
      assert.deepEqual(await c.executeOob("ping-oob"), { pong: true });
      assert.deepEqual(
        await c.executeOob("whoami").catch((e: QmpCommandError) => e.desc),
        "The command whoami does not support OOB",
      );
      const err = await c.executeOob("fast").then(() => null, (e: unknown) => e);
      assert.ok(err instanceof QmpCommandError);
      assert.equal(err.desc, "The command fast does not support OOB");
      await c.execute("release");
      await slow;
    }, { oob: true });
    await withClient(path, async (c) => {
      const err = await c.executeOob("ping-oob").then(() => null, (e: unknown) => e);
      assert.ok(err instanceof QmpCommandError);
      assert.equal(err.desc, "QMP input member 'exec-oob' is unexpected");
    });
    await withRaw(path, async (r) => {
      await r.negotiate(true);
      await r.send('{"exec-oob":"whoami","id":1}\n');
      assert.deepEqual(await r.msg(), { ...genericError("The command whoami does not support OOB"), id: 1 });
      await r.send('{"exec-oob":"ping-oob","execute":"fast","id":2}\n');
      assert.deepEqual(await r.msg(), {
        ...genericError("QMP input member 'execute' clashes with 'exec-oob'"),
        id: 2,
      });
      await r.send('{"exec-oob":"ping-oob"}\n');
      assert.deepEqual(await r.msg(), { return: { pong: true } });
    });
  });
});

Deno.test("events reach negotiated clients with timestamps; waitEvent sees past and future events", async () => {
  await withServer(async ({ path, server }) => {
    await withRaw(path, async (r) => {
      await r.msg();
      server.emit("BEFORE_NEGOTIATION");
      await r.send('{"execute":"qmp_capabilities"}\n');
      // An event sent to this client would have been written before the reply.
      assert.deepEqual(await r.msg(), { return: {} });
      const before = Date.now() / 1000;
      server.emit("STOP");
      const stop = await r.msg();
      assert.deepEqual(Object.keys(stop), ["timestamp", "event"]);
      const ts = stop.timestamp as { seconds: number; microseconds: number };
      assert.ok(Number.isInteger(ts.seconds) && Number.isInteger(ts.microseconds));
      assert.ok(ts.microseconds >= 0 && ts.microseconds < 1e6);
      assert.ok(Math.abs(ts.seconds + ts.microseconds / 1e6 - before) < 5);
      server.emit("MIGRATION", { status: "active" });
      const mig = await r.msg();
      assert.equal(mig.event, "MIGRATION");
      assert.deepEqual(mig.data, { status: "active" });
    });

    await withClient(path, async (c) => {
      const seen: string[] = [];
      const off = c.onEvent((e) => seen.push(e.event));
      server.emit("MIGRATION", { status: "setup" });
      server.emit("MIGRATION", { status: "active" });
      await c.execute("emit", { event: "STOP" });
      // The event was emitted before the reply was written, so it is already here.
      assert.equal(c.events.length, 3);
      assert.deepEqual(seen, ["MIGRATION", "MIGRATION", "STOP"]);
      const stop = await c.waitEvent("STOP", undefined, { timeoutMs: 10 });
      assert.deepEqual(stop.data, {});
      assert.equal(stop.index, 2);
      const active = await c.waitEvent("MIGRATION", (e) => e.data.status === "active");
      assert.equal(active.index, 1);
      assert.equal((await c.waitEvent("MIGRATION")).index, 0);

      const since = c.events.length;
      const future = c.waitEvent("MIGRATION", (e) => e.data.status === "completed", { since });
      const other = c.waitEvent("RESUME", undefined, { since });
      server.emit("MIGRATION", { status: "active" });
      server.emit("RESUME");
      server.emit("MIGRATION", { status: "completed" });
      const done: QmpEvent = await future;
      assert.equal(done.index, since + 2);
      assert.equal((await other).index, since + 1);
      assert.ok(done.timestamp.seconds > 0);
      off();
      server.emit("SHUTDOWN", { guest: false });
      await c.waitEvent("SHUTDOWN");
      assert.equal(seen.length, 6);

      const t = await c.waitEvent("NEVER", undefined, { timeoutMs: 30 }).then(() => null, (e: unknown) => e);
      assert.ok(t instanceof QmpTimeoutError);
      assert.match(
        t.message,
        /^timed out after 30 ms waiting for event NEVER on src; last seen: 7 events, the last: /,
      );
      assert.match(t.message, /#6 SHUTDOWN \{"guest":false\}/);
      const later = await c.waitEvent("STOP", undefined, { timeoutMs: 20, since: 3 }).catch((e: Error) => e);
      assert.ok(later instanceof QmpTimeoutError && later.message.includes("(since #3)"));
      const thrown = await c.waitEvent("STOP", () => {
        throw new Error("bad predicate");
      }).catch((e: Error) => e.message);
      assert.equal(thrown, "bad predicate");
    });

    // Several clients each get every event.
    await withClient(path, async (a) => {
      await withClient(path, async (b) => {
        server.emit("RESET", { guest: true });
        const [ea, eb] = await Promise.all([a.waitEvent("RESET"), b.waitEvent("RESET")]);
        assert.deepEqual(ea.data, eb.data);
      }, { name: "b" });
    }, { name: "a" });
  });
});

Deno.test("request ids are echoed verbatim", async () => {
  await withServer(async ({ path }) => {
    await withRaw(path, async (r) => {
      await r.negotiate();
      for (const id of [7, "x", { a: [1, "b"] }, null, [1, 2], 1.5, true]) {
        await r.send(JSON.stringify({ execute: "fast", id }) + "\n");
        assert.deepEqual(await r.msg(), { return: { fast: true }, id });
        await r.send(JSON.stringify({ id, execute: "nope" }) + "\n");
        const e = await r.msg();
        assert.deepEqual(e.id, id);
        assert.deepEqual(e.error, { class: "CommandNotFound", desc: "The command nope has not been found" });
      }
      await r.send('{"execute":"fast"}\n');
      assert.deepEqual(await r.msg(), { return: { fast: true } });
      await r.send('{"execute":"whoami","id":{"k":1}}\n');
      assert.deepEqual(await r.msg(), { return: { client: 1, id: { k: 1 }, oob: false }, id: { k: 1 } });
    });
  });
});

Deno.test("malformed input gets GenericError replies and the session continues", async () => {
  await withServer(async ({ path }) => {
    await withRaw(path, async (r) => {
      await r.negotiate();
      const expectError = async (input: string, desc: RegExp | string) => {
        await r.send(input);
        const m = await r.msg();
        const err = m.error as { class: string; desc: string };
        assert.equal(err?.class, "GenericError", `for ${JSON.stringify(input)}: ${JSON.stringify(m)}`);
        if (typeof desc === "string") assert.equal(err.desc, desc);
        else assert.match(err.desc, desc);
        return m;
      };
      await expectError('{"execute": }\n', /^JSON parse error, /);
      await expectError("{,}\n", /^JSON parse error, /);
      await expectError("nonsense\n", /^JSON parse error, /);
      await expectError("}\n", /^JSON parse error, /);
      await expectError("[1, 2]\n", "QMP input must be a JSON object");
      await expectError("42\n", "QMP input must be a JSON object");
      await expectError('"str"\n', "QMP input must be a JSON object");
      await expectError('{"execute":"fast","foo":1,"id":3}\n', "QMP input member 'foo' is unexpected");
      await expectError('{"arguments":{}}\n', "QMP input lacks member 'execute'");
      await expectError('{"execute":1}\n', "QMP input member 'execute' must be a string");
      await expectError(
        '{"execute":"echo","arguments":[]}\n',
        "QMP input member 'arguments' must be an object",
      );
      const withId = await expectError('{"id":5,"execute":"fast","bad":0}\n', /unexpected/);
      assert.equal(withId.id, 5);
      await r.send('{"execute":"fast","id":"still-alive"}\n');
      assert.deepEqual(await r.msg(), { return: { fast: true }, id: "still-alive" });
    });
  });
});

Deno.test("input split and merged arbitrarily across writes is framed correctly", async () => {
  await withServer(async ({ path }) => {
    await withRaw(path, async (r) => {
      await r.negotiate();
      // Byte by byte, with a multi-byte character, braces and escaped quotes inside strings.
      const tricky = { s: 'a}{"]\\[ é 😀', n: [1, { x: "}" }] };
      const bytes = new TextEncoder().encode(JSON.stringify({ execute: "echo", arguments: tricky, id: 1 }));
      for (let i = 0; i < bytes.length; i++) await r.send(bytes.subarray(i, i + 1));
      assert.deepEqual(await r.msg(), { return: tricky, id: 1 });

      // Merged: concatenated, CRLF separated, whitespace between, in one write.
      await r.send('{"execute":"fast","id":2}{"execute":"fast","id":3}\r\n  {"execute":"fast","id":4}\t\n');
      assert.deepEqual([await r.msg(), await r.msg(), await r.msg()].map((m) => m.id), [2, 3, 4]);

      // Split mid-token and mid-escape; a value ending a chunk exactly.
      for (
        const part of [
          '{"exe',
          'cute":"echo","argu',
          'ments":{"q":"\\',
          '"x"},"id"',
          ":5}",
          '{"execute"',
          ':"fast"}',
        ]
      ) {
        await r.send(part);
      }
      assert.deepEqual(await r.msg(), { return: { q: '"x' }, id: 5 });
      assert.deepEqual(await r.msg(), { return: { fast: true } });

      // QEMU accepts single-quoted strings.
      await r.send(`{'execute': 'echo', 'arguments': {'k': 'it\\'s "q"'}, 'id': 'sq'}\n`);
      assert.deepEqual(await r.msg(), { return: { k: `it's "q"` }, id: "sq" });
    });
  });
});

Deno.test("64-bit integers survive both directions", async () => {
  await withServer(async ({ path }) => {
    await withRaw(path, async (r) => {
      await r.negotiate();
      await r.send('{"execute":"typed","arguments":{"s":"","i":18446744073709551615},"id":1}\n');
      const line = await r.rawLine();
      assert.equal(line, '{"return": {"got": {"s": "", "i": 18446744073709551615}}, "id": 1}\r\n');
    });
    await withClient(path, async (c) => {
      const r = await c.execute<{ v: bigint }>("echo", { v: 9007199254740993n });
      assert.equal(r.v, 9007199254740993n);
    });
  });
});

// ---------------------------------------------------------------------------------------------------
// Client behaviour: timeouts, peer death, close

Deno.test("client waits time out naming the side and the command", async () => {
  await withServer(async ({ path }) => {
    await withClient(path, async (c) => {
      const err = await c.execute("hang", undefined, { timeoutMs: 30 }).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof QmpTimeoutError);
      assert.equal(err.message, "dst: timed out after 30ms waiting for reply to hang");
      assert.deepEqual(await c.execute("fast"), { fast: true });
      assert.ok(c.transcript.some((e) => e.dir === "note" && e.text.includes("reply to hang")));
    }, { name: "dst" });
  });
});

Deno.test("connect retries until the socket appears, and times out with a clear message", async () => {
  const dir = await Deno.makeTempDir({ prefix: "migtest_qmp_" });
  try {
    const path = `${dir}/late.sock`;
    const pending = QmpClient.connect(path, { name: "late", timeoutMs: 3000 });
    await sleep(60);
    const server = QmpServer.listen({ path, commands: commands(new Gate()) });
    try {
      const c = await pending;
      assert.deepEqual(await c.execute("fast"), { fast: true });
      await c.close();
    } finally {
      await server.close();
    }
    const err = await QmpClient.connect(`${dir}/none.sock`, { name: "ghost", timeoutMs: 50 }).catch((e) => e);
    assert.ok(err instanceof QmpTimeoutError);
    assert.match(err.message, /^ghost: timed out after 50ms connecting to QMP socket .*none\.sock/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pending calls reject promptly when the peer dies", async () => {
  const dir = await Deno.makeTempDir({ prefix: "migtest_qmp_" });
  const path = `${dir}/fake.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  try {
    // A fake QEMU that negotiates, then drops the connection on the next command.
    const fake = (async () => {
      const r = Raw.wrap(await listener.accept());
      try {
        await r.send(
          '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, ' +
            '"capabilities": []}}\r\n',
        );
        const caps = await r.msg();
        await r.send(JSON.stringify({ return: {}, id: caps.id }) + "\r\n");
        await r.msg();
      } finally {
        r.close();
      }
    })();
    const c = await QmpClient.connect(path, { name: "fakeqemu", timeoutMs: 3000 });
    try {
      const ev = c.waitEvent("STOP");
      const err = await c.execute("query-status").then(() => null, (e: unknown) => e);
      assert.ok(err instanceof QmpClosedError);
      assert.match(err.message, /^connection closed by fakeqemu while waiting for query-status/);
      await assert.rejects(ev, /connection closed by fakeqemu while waiting for event STOP/);
      assert.equal(c.closed, true);
      await assert.rejects(c.execute("x"), /connection closed by fakeqemu while waiting for x/);
      await fake;
    } finally {
      await c.close();
    }
    const noOob = QmpClient.connect(path, { name: "nooob", timeoutMs: 3000, oob: true });
    const r = Raw.wrap(await listener.accept());
    await r.send(
      '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 6}, "package": ""}, ' +
        '"capabilities": []}}\r\n',
    );
    await assert.rejects(noOob, /nooob: server does not offer the oob capability/);
    r.close();
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server close disconnects clients, aborts handlers and removes the socket", async () => {
  const dir = await Deno.makeTempDir({ prefix: "migtest_qmp_" });
  try {
    const path = `${dir}/qmp.sock`;
    const server = QmpServer.listen({ path, commands: commands(new Gate()) });
    const c = await QmpClient.connect(path, { name: "src", timeoutMs: 3000 });
    const hang = c.execute("hang").then(() => null, (e: unknown) => e);
    await c.execute("fast");
    await server.close();
    await server.close();
    const err = await hang;
    assert.ok(err instanceof QmpClosedError, String(err));
    assert.match(err.message, /^connection closed by src while waiting for hang/);
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
    assert.equal(c.closed, true);
    await c.close();
    await c.close();
    // A stale socket file from a dead server does not prevent listening again.
    const l = Deno.listen({ transport: "unix", path });
    const stale = QmpServer.listen({ path, commands: [] });
    await stale.close();
    try {
      l.close();
    } catch {
      // Deno may already consider it gone.
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a quit handler gets its reply and event out before the server closes", async () => {
  await withServer(async ({ path, server }) => {
    const c = await QmpClient.connect(path, { name: "src", timeoutMs: 3000 });
    try {
      assert.deepEqual(await c.execute("quit"), {});
      assert.deepEqual((await c.waitEvent("SHUTDOWN")).data, { guest: false, reason: "host-qmp-quit" });
      assert.equal(server.closed, true);
      await assert.rejects(c.execute("fast"), /connection closed by src while waiting for fast/);
    } finally {
      await c.close();
    }
  });
});

Deno.test("client close rejects pending calls and is idempotent", async () => {
  await withServer(async ({ path }) => {
    const c = await QmpClient.connect(path, { name: "src", timeoutMs: 3000 });
    const hang = c.execute("hang");
    const ev = c.waitEvent("NEVER");
    await c.execute("fast");
    await c.close();
    await assert.rejects(hang, /^QmpClosedError: QMP client src was closed while waiting for hang$/);
    await assert.rejects(ev, /QMP client src was closed while waiting for event NEVER/);
    await assert.rejects(c.execute("fast"), /was closed while waiting for fast/);
    await c.close();
  });
});

Deno.test("transcripts and traffic hooks record both directions", async () => {
  const traffic: QmpTrafficEntry[] = [];
  await withServer(async ({ path, server }) => {
    const shared: QmpTranscriptEntry[] = [];
    await withClient(path, async (src) => {
      await withClient(path, async (dst) => {
        await src.execute("fast");
        await dst.tryExecute("nope");
        server.emit("STOP");
        await dst.waitEvent("STOP");
        dst.note("checkpoint");
      }, { name: "dst", transcript: shared });
    }, { name: "src", transcript: shared });
    assert.ok(shared.every((e) => typeof e.time === "number"));
    const lines = formatTranscript(shared);
    assert.ok(lines.some((l) => /^\S+Z src -> \{"execute":"fast","id":"src-2"\}$/.test(l)), lines.join("\n"));
    assert.ok(lines.some((l) => / src <- \{"return": \{"fast": true\}, "id": "src-2"\}$/.test(l)));
    assert.ok(lines.some((l) => / dst <- \{"QMP": /.test(l)));
    assert.ok(lines.some((l) => / dst <- .*"event": "STOP"/.test(l)));
    assert.ok(lines.some((l) => / dst -- checkpoint$/.test(l)));
  }, { onTraffic: (e) => traffic.push(e) });
  assert.ok(traffic.some((e) => e.dir === "in" && e.text === '{"execute":"fast","id":"src-2"}'));
  assert.ok(traffic.some((e) => e.dir === "out" && e.text.includes('"event": "STOP"')));
  assert.ok(traffic.some((e) => e.dir === "out" && e.text.startsWith('{"QMP"')));
});
