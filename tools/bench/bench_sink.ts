/** Benchmark peer: accepts one unix-socket connection, reads until EOF, replies with the byte count. */
const path = Deno.args[0];
const listener = Deno.listen({ transport: "unix", path });
console.log("ready");
const conn = await listener.accept();
listener.close();
const buf = new Uint8Array(1 << 20);
let total = 0;
while (true) {
  const n = await conn.read(buf);
  if (n === null) break;
  total += n;
}
await conn.write(new TextEncoder().encode(`${total}\n`));
conn.close();
