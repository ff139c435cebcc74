/**
 * Host memory backends (QEMU's backends/hostmem-file.c and hostmem-memfd.c): guest RAM held in a file
 * the host maps (`-object memory-backend-file,id=mem0,mem-path=PATH,share=on`) or in a memfd
 * (`memory-backend-memfd`, always shared), given to the machine as its main RAM. With share=on every
 * process that maps the file sees the same memory, which is what x-ignore-shared and cpr-reboot build
 * on; a memfd's descriptor is what cpr-transfer passes to the new process, which maps the same RAM.
 */
import { mapFd, mapFileShared, memfdCreate } from "./os/libc.ts";

/** `--memory-backend id=ID,mem-path=PATH[,share=on|off]`, or `type=memfd,id=ID`. */
export type MemoryBackend = MemoryBackendFile | MemoryBackendMemfd;

export interface MemoryBackendFile {
  type?: "file";
  id: string;
  memPath: string;
  /** share=on: a shared mapping (qemu_ram_is_shared); off: a private copy of the file's contents. */
  share: boolean;
}

/** Anonymous shared memory with a descriptor (memfd_create): what cpr-transfer hands over. */
export interface MemoryBackendMemfd {
  type: "memfd";
  id: string;
  share: true;
}

/** How another thread reaches the same memory: a shareable buffer, the file, or the descriptor to map again. */
export type RamShare = SharedArrayBuffer | { memPath: string; size: number } | { fd: number; size: number };

/** A backend's memory as the machine holds it. */
export interface HostRam {
  mem: Uint8Array;
  share: RamShare;
  /** The descriptor behind it (a memfd's), which cpr-transfer passes on; absent for the others. */
  fd?: number;
}

/**
 * Maps a backend's memory (the engine process: mmap; the simulated world: one buffer per path or
 * descriptor), or a descriptor passed by the previous process (cpr-transfer's target).
 */
export interface HostMemory {
  map(backend: MemoryBackend, size: number): HostRam;
  adopt(fd: number, size: number): HostRam;
}

/** Parses `id=mem0,mem-path=/dev/shm/x,share=on` or `type=memfd,id=ram0` (QEMU's names); throws what is wrong. */
export function parseMemoryBackend(text: string): MemoryBackend {
  const props = new Map<string, string>();
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new Error(`memory backend: '${part}' is not NAME=VALUE`);
    props.set(part.slice(0, eq), part.slice(eq + 1));
  }
  for (const k of props.keys()) {
    if (!["type", "id", "mem-path", "share"].includes(k)) {
      throw new Error(`memory backend: unknown property '${k}'`);
    }
  }
  const type = props.get("type") ?? "file";
  if (type !== "file" && type !== "memfd") {
    throw new Error(`memory backend: type '${type}' is not file or memfd`);
  }
  const id = props.get("id");
  if (type === "memfd") {
    if (!id) throw new Error("memory backend: Parameter 'id' is missing");
    if (props.has("mem-path")) throw new Error("memory backend: a memfd has no 'mem-path'");
    if (props.get("share") === "off") throw new Error("memory backend: a memfd here is always share=on");
    return { type: "memfd", id, share: true };
  }
  const memPath = props.get("mem-path");
  if (!id) throw new Error("memory backend: Parameter 'id' is missing");
  if (!memPath) throw new Error("memory backend: property 'mem-path' is required");
  const share = props.get("share") ?? "off";
  if (share !== "on" && share !== "off") {
    throw new Error(`memory backend: Parameter 'share' expects 'on' or 'off'`);
  }
  return { id, memPath, share: share === "on" };
}

/** The memory behind a RamShare, in this thread (a vCPU thread maps the file itself). */
export function viewRam(share: RamShare): Uint8Array {
  if (share instanceof SharedArrayBuffer) return new Uint8Array(share);
  return new Uint8Array(
    "fd" in share ? mapFd(share.fd, share.size) : mapFileShared(share.memPath, share.size),
  );
}

/** A private copy (share=off): the file's contents at start, in memory of this process's own. */
function privateCopy(contents: Uint8Array | null, size: number, path: string): HostRam {
  if (contents && contents.length !== 0 && contents.length !== size) {
    throw new Error(
      `${path}: backing store size 0x${contents.length.toString(16)} does not match 'size' option ` +
        `0x${size.toString(16)}`,
    );
  }
  const sab = new SharedArrayBuffer(size);
  const mem = new Uint8Array(sab);
  if (contents?.length) mem.set(contents);
  return { mem, share: sab };
}

/** This host's: share=on maps the file MAP_SHARED (the vCPU thread maps it again). */
export const hostMemory: HostMemory = {
  map(b, size) {
    if (b.type === "memfd") return hostMemory.adopt(memfdCreate(b.id, size), size);
    if (!b.share) {
      let contents: Uint8Array | null = null;
      try {
        contents = Deno.readFileSync(b.memPath);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      return privateCopy(contents, size, b.memPath);
    }
    return { mem: new Uint8Array(mapFileShared(b.memPath, size)), share: { memPath: b.memPath, size } };
  },
  // The descriptor stays open: it is the memory's name for the vCPU thread and for a later cpr-transfer.
  adopt: (fd, size) => ({ mem: new Uint8Array(mapFd(fd, size)), share: { fd, size }, fd }),
};

/**
 * The simulated world's host: both sides run in one process, so a shared file is one buffer per path,
 * handed to every side that maps it.
 */
export function memoryRegistry(): HostMemory & { clear(): void } {
  const files = new Map<string, SharedArrayBuffer>();
  /** The simulated memfds, by descriptor (numbers of the simulated host's own, from 1000 up). */
  const memfds = new Map<number, SharedArrayBuffer>();
  const adopt = (fd: number, size: number): HostRam => {
    const sab = memfds.get(fd);
    if (!sab) throw new Error(`fd ${fd} is no memory the simulated host made`);
    if (sab.byteLength !== size) throw new Error(`fd ${fd} is ${sab.byteLength} bytes, not ${size}`);
    return { mem: new Uint8Array(sab), share: sab, fd };
  };
  return {
    map(b, size) {
      if (b.type === "memfd") {
        const fd = 1000 + memfds.size;
        memfds.set(fd, new SharedArrayBuffer(size));
        return adopt(fd, size);
      }
      const have = files.get(b.memPath);
      if (!b.share) return privateCopy(have ? new Uint8Array(have) : null, size, b.memPath);
      if (have && have.byteLength !== size) return privateCopy(new Uint8Array(have), size, b.memPath);
      const sab = have ?? new SharedArrayBuffer(size);
      files.set(b.memPath, sab);
      return { mem: new Uint8Array(sab), share: sab };
    },
    adopt,
    clear: () => {
      files.clear();
      memfds.clear();
    },
  };
}
