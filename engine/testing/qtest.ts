/**
 * The subset of QEMU's qtest text protocol that the migration tests use (`-qtest unix:PATH`):
 * readb/readw/readl/readq, writeb/writew/writel/writeq, read ADDR SIZE, write ADDR SIZE DATA.
 * Addresses are guest-physical with pc.ram mapped at 0; values are little-endian as on x86.
 */
import { errorMessage } from "../error.ts";
import type { Machine } from "../guest/machine.ts";

const WIDTH: Record<string, number> = { b: 1, w: 2, l: 4, q: 8 };
/** Largest `read` we serve in one reply. */
const MAX_READ = 16 << 20;

export class QtestServer {
  #listener: Deno.Listener;
  #conns = new Set<Deno.Conn>();
  #accepting: Promise<void>;

  constructor(path: string, private readonly machine: Machine) {
    try {
      Deno.removeSync(path);
    } catch {
      // No stale socket.
    }
    this.#listener = Deno.listen({ transport: "unix", path });
    this.#accepting = this.#accept();
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      this.#conns.add(conn);
      this.#serve(conn).finally(() => this.#conns.delete(conn));
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const enc = new TextEncoder();
    let pending = "";
    try {
      for await (const chunk of conn.readable.pipeThrough(new TextDecoderStream())) {
        pending += chunk;
        let nl;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (line) await conn.write(enc.encode(this.execute(line) + "\n"));
        }
      }
    } catch {
      // Client went away.
    }
  }

  /** Executes one command line; returns the reply line ("OK ..." or "FAIL ..."). */
  execute(line: string): string {
    const [cmd, ...args] = line.split(/\s+/);
    try {
      const ram = this.machine.blocks[0];
      const view = new DataView(ram.mem.buffer, ram.mem.byteOffset, ram.mem.length);
      const addr = (i: number, len: number) => {
        const a = Number(BigInt(args[i]));
        if (!Number.isSafeInteger(a) || a < 0 || a + len > ram.usedLength) {
          throw new Error(`address ${args[i]} (+${len}) is outside pc.ram`);
        }
        return a;
      };
      const m = /^(read|write)([bwlq])$/.exec(cmd);
      if (m) {
        const n = WIDTH[m[2]];
        const a = addr(0, n);
        if (m[1] === "read") {
          let v = 0n;
          for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(view.getUint8(a + i));
          return `OK 0x${v.toString(16).padStart(n * 2, "0")}`;
        }
        let v = BigInt(args[1]);
        for (let i = 0; i < n; i++, v >>= 8n) view.setUint8(a + i, Number(v & 0xffn));
        this.#markDirty(a, n);
        return "OK";
      }
      if (cmd === "read") {
        const size = Number(BigInt(args[1]));
        if (size > MAX_READ) throw new Error(`read of ${size} bytes exceeds ${MAX_READ}`);
        const a = addr(0, size);
        return `OK 0x${ram.mem.slice(a, a + size).toHex()}`;
      }
      if (cmd === "write") {
        const size = Number(BigInt(args[1]));
        const a = addr(0, size);
        const hex = (args[2] ?? "").replace(/^0x/, "");
        const data = Uint8Array.fromHex(hex.padEnd(size * 2, "0").slice(0, size * 2));
        ram.mem.set(data, a);
        this.#markDirty(a, size);
        return "OK";
      }
      return `FAIL Unknown command '${cmd}'`;
    } catch (e) {
      return `FAIL ${errorMessage(e)}`;
    }
  }

  #markDirty(addr: number, len: number): void {
    const ram = this.machine.blocks[0];
    for (let p = Math.floor(addr / ram.pageSize); p * ram.pageSize < addr + len; p++) ram.markDirty(p);
  }

  async close(): Promise<void> {
    this.#listener.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // Already closed.
      }
    }
    await this.#accepting.catch(() => {});
  }
}
