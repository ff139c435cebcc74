/**
 * The few libc calls Deno has no API for: unix sockets whose raw descriptors we hold, and descriptors
 * passed over them (SCM_RIGHTS), which QEMU's `getfd`/`add-fd` receive on the monitor socket. Calls
 * that can block (accept, recvmsg, read, write, pread, pwrite) run off the event loop (`nonblocking`);
 * shutdown() wakes a thread blocked on a socket, which close() alone does not on Linux. And mmap(2) of a
 * file, for guest RAM that two processes share (a memory-backend-file with share=on).
 */

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const SHUT_WR = 1;
const SHUT_RDWR = 2;
const SUN_PATH_MAX = 108;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_TRUNC = 0o1000;
export const O_DIRECT = 0o40000;
const O_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const O_ACCMODE = 3;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32", nonblocking: true },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "isize", nonblocking: true },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize", nonblocking: true },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  dup: { parameters: ["i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let lib: Deno.DynamicLibrary<typeof SYMBOLS> | null = null;

function libc(): Libc {
  lib ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return lib.symbols;
}

/**
 * Loads libc now. The library stays loaded for the process's life; a test module that passes
 * descriptors calls this at its top level, so the resource sanitizer does not count the load against
 * the first test that happens to need it.
 */
export function preloadLibc(): void {
  // A run without FFI (a narrow `deno test` of other cases) has nothing to preload: its cases never pass
  // descriptors, and a case that does fails there with Deno's own message.
  if (Deno.permissions.querySync({ name: "ffi" }).state === "granted") libc();
}

/**
 * errno of the calling thread. A `nonblocking` call runs on another thread, so its errno is lost: those
 * calls report a generic failure, which is all their callers need (the peer is gone).
 */
function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

function strerror(n: number): string {
  const p = libc().strerror(n);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${n}`;
}

/** Throws `what: <strerror>` when a synchronous call returned -1. */
function check(r: number | bigint, what: string): number {
  if (Number(r) < 0) throw new Error(`${what}: ${strerror(errno())}`);
  return Number(r);
}

function sockaddrUn(path: string): Uint8Array {
  const p = new TextEncoder().encode(path);
  if (p.length >= SUN_PATH_MAX) throw new Error(`unix socket path too long: ${path}`);
  const a = new Uint8Array(2 + SUN_PATH_MAX);
  new DataView(a.buffer).setUint16(0, AF_UNIX, true);
  a.set(p, 2);
  return a;
}

function cString(s: string): Uint8Array {
  const b = new TextEncoder().encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

/** A connected unix stream socket's descriptor. */
export function unixConnect(path: string): number {
  const fd = check(libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
  const a = sockaddrUn(path);
  if (libc().connect(fd, a, a.length) < 0) {
    const e = errno();
    libc().close(fd);
    throw new Error(`Failed to connect to '${path}': ${strerror(e)}`);
  }
  return fd;
}

/** A listening unix stream socket's descriptor (a stale socket file at `path` replaced). */
export function unixListen(path: string): number {
  try {
    if (Deno.lstatSync(path).isSocket) Deno.removeSync(path);
  } catch {
    // Nothing there.
  }
  const fd = check(libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
  const a = sockaddrUn(path);
  if (libc().bind(fd, a, a.length) < 0 || libc().listen(fd, 8) < 0) {
    const e = errno();
    libc().close(fd);
    throw new Error(`Failed to bind socket to ${path}: ${strerror(e)}`);
  }
  return fd;
}

/** The next connection on a listening socket; null once the socket is shut down. */
export async function accept(fd: number): Promise<number | null> {
  const c = await libc().accept4(fd, null, null, SOCK_CLOEXEC);
  return c < 0 ? null : c;
}

/** A connected pair of unix stream sockets (what upstream's fd/tcp case migrates over). */
export function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  check(libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), "socketpair");
  return [fds[0], fds[1]];
}

/** open(2); throws with the path and strerror. */
export function openFile(path: string, flags: number, mode = 0o600): number {
  return check(libc().open(cString(path), flags | O_CLOEXEC, mode), `Could not open '${path}'`);
}

export function dup(fd: number): number {
  return check(libc().dup(fd), "dup");
}

/** The access mode a descriptor was opened with (O_RDONLY, O_WRONLY or O_RDWR), or -1 if it is not open. */
export function accessMode(fd: number): number {
  const fl = libc().fcntl(fd, F_GETFL, 0);
  return fl < 0 ? -1 : fl & O_ACCMODE;
}

/** Whether a descriptor has O_DIRECT set. */
export function isDirect(fd: number): boolean {
  const fl = libc().fcntl(fd, F_GETFL, 0);
  return fl >= 0 && (fl & O_DIRECT) !== 0;
}

export function closeFd(fd: number): void {
  libc().close(fd);
}

/** Wakes every thread blocked on the socket (they see end of stream or an error). */
export function shutdownFd(fd: number): void {
  libc().shutdown(fd, SHUT_RDWR);
}

function ptr(b: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
}

/**
 * sendmsg(2) of `data` with `fds` as SCM_RIGHTS; returns the bytes sent (the descriptors go with the
 * first of them, as QEMU's monitor expects them with the command).
 */
export async function sendWithFds(fd: number, data: Uint8Array, fds: number[]): Promise<number> {
  const iov = new BigUint64Array([ptr(data), BigInt(data.length)]);
  const iovBytes = new Uint8Array(iov.buffer);
  const cmsgLen = 16 + 4 * fds.length;
  const control = new Uint8Array(fds.length ? (cmsgLen + 7) & ~7 : 0);
  if (fds.length) {
    const v = new DataView(control.buffer);
    v.setBigUint64(0, BigInt(cmsgLen), true);
    v.setInt32(8, SOL_SOCKET, true);
    v.setInt32(12, SCM_RIGHTS, true);
    fds.forEach((f, i) => v.setInt32(16 + 4 * i, f, true));
  }
  const msg = new DataView(new ArrayBuffer(56));
  msg.setBigUint64(16, ptr(iovBytes), true);
  msg.setBigUint64(24, 1n, true);
  if (fds.length) {
    msg.setBigUint64(32, ptr(control), true);
    msg.setBigUint64(40, BigInt(control.length), true);
  }
  const n = await libc().sendmsg(fd, new Uint8Array(msg.buffer), 0);
  if (n < 0) throw new Error("sendmsg failed: the peer is gone");
  return Number(n);
}

/** recvmsg(2) into `buf`: the bytes read (0 at end of stream) and any descriptors that came with them. */
export async function recvWithFds(fd: number, buf: Uint8Array): Promise<{ n: number; fds: number[] }> {
  const iov = new BigUint64Array([ptr(buf), BigInt(buf.length)]);
  const iovBytes = new Uint8Array(iov.buffer);
  const control = new Uint8Array(256);
  const msg = new DataView(new ArrayBuffer(56));
  msg.setBigUint64(16, ptr(iovBytes), true);
  msg.setBigUint64(24, 1n, true);
  msg.setBigUint64(32, ptr(control), true);
  msg.setBigUint64(40, BigInt(control.length), true);
  const n = Number(await libc().recvmsg(fd, new Uint8Array(msg.buffer), 0));
  if (n < 0) throw new Error("recvmsg failed: the connection is gone");
  const fds: number[] = [];
  const controlLen = Number(msg.getBigUint64(40, true));
  const v = new DataView(control.buffer);
  for (let off = 0; off + 16 <= controlLen;) {
    const len = Number(v.getBigUint64(off, true));
    if (len < 16) break;
    if (v.getInt32(off + 8, true) === SOL_SOCKET && v.getInt32(off + 12, true) === SCM_RIGHTS) {
      for (let i = off + 16; i + 4 <= off + len; i += 4) fds.push(v.getInt32(i, true));
    }
    off += (len + 7) & ~7;
  }
  return { n, fds };
}

/** read(2); 0 at end of stream; throws when the descriptor failed. */
export async function readFd(fd: number, buf: Uint8Array): Promise<number> {
  const n = Number(await libc().read(fd, buf, BigInt(buf.length)));
  if (n < 0) throw new Error(`read from fd ${fd} failed`);
  return n;
}

/** write(2) of all of `buf`. */
export async function writeAllFd(fd: number, buf: Uint8Array): Promise<void> {
  for (let off = 0; off < buf.length;) {
    const chunk = buf.subarray(off);
    const n = Number(await libc().write(fd, chunk, BigInt(chunk.length)));
    if (n <= 0) throw new Error(`write to fd ${fd} failed`);
    off += n;
  }
}

export async function pread(fd: number, buf: Uint8Array, pos: number): Promise<number> {
  const n = Number(await libc().pread(fd, buf, BigInt(buf.length), BigInt(pos)));
  if (n < 0) throw new Error(`pread from fd ${fd} at ${pos} failed`);
  return n;
}

export async function pwrite(fd: number, buf: Uint8Array, pos: number): Promise<number> {
  const n = Number(await libc().pwrite(fd, buf, BigInt(buf.length), BigInt(pos)));
  if (n < 0) throw new Error(`pwrite to fd ${fd} at ${pos} failed`);
  return n;
}

export function ftruncate(fd: number, size: number): void {
  check(libc().ftruncate(fd, BigInt(size)), `ftruncate fd ${fd}`);
}

/** The file's size (lseek to its end). */
export function fileSize(fd: number): number {
  return check(libc().lseek(fd, 0n, 2), `lseek fd ${fd}`);
}

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MFD_CLOEXEC = 1;

/**
 * The file at `path` mapped MAP_SHARED, read-write, `size` bytes: every mapping of the same file, in any
 * process or thread, is the same memory. An empty file is sized first; one of another size is refused
 * (QEMU's file_ram_alloc). The mapping lasts as long as the process, as guest RAM does in QEMU: nothing
 * may touch the returned buffer after an munmap, so there is none.
 */
export function mapFileShared(path: string, size: number): ArrayBuffer {
  const fd = openFile(path, O_RDWR | O_CREAT);
  try {
    const have = fileSize(fd);
    if (have === 0) ftruncate(fd, size);
    else if (have !== size) {
      throw new Error(
        `backing store size 0x${have.toString(16)} does not match 'size' option 0x${size.toString(16)}`,
      );
    }
    return mapFd(fd, size, `'${path}'`);
  } finally {
    closeFd(fd);
  }
}

/** `size` bytes of descriptor `fd` mapped MAP_SHARED, read-write (the mapping outlives the descriptor). */
export function mapFd(fd: number, size: number, what = `fd ${fd}`): ArrayBuffer {
  const p = libc().mmap(null, BigInt(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
  // MAP_FAILED is (void *)-1.
  if (p === null || BigInt(Deno.UnsafePointer.value(p)) === 0xffff_ffff_ffff_ffffn) {
    throw new Error(`mmap of ${what} failed: ${strerror(errno())}`);
  }
  return Deno.UnsafePointerView.getArrayBuffer(p, size);
}

/** memfd_create(2) of `size` bytes: anonymous memory with a descriptor, which SCM_RIGHTS can pass on. */
export function memfdCreate(name: string, size: number): number {
  const fd = check(libc().memfd_create(cString(name), MFD_CLOEXEC), `memfd_create ${name}`);
  ftruncate(fd, size);
  return fd;
}

/** Closes the writing half only: the peer reads end of stream, and can still answer. */
export function shutdownWrite(fd: number): void {
  libc().shutdown(fd, SHUT_WR);
}
