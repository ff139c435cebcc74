/**
 * Host memory backends (QEMU's backends/hostmem-file.c): guest RAM held in a file the host maps, given
 * to the machine as its main RAM (`-object memory-backend-file,id=mem0,mem-path=PATH,share=on`). With
 * share=on every process that maps the file sees the same memory, which is what x-ignore-shared and the
 * cpr modes build on: a destination on the same host maps the source's RAM instead of receiving it.
 */
import { mapFileShared } from "./os/libc.ts";

/** `--memory-backend id=ID,mem-path=PATH[,share=on|off]`. */
export interface MemoryBackendFile {
  id: string;
  memPath: string;
  /** share=on: a shared mapping (qemu_ram_is_shared); off: a private copy of the file's contents. */
  share: boolean;
}

/** How another thread reaches the same memory: a shareable buffer, or the file to map again. */
export type RamShare = SharedArrayBuffer | { memPath: string; size: number };

/** A backend's memory as the machine holds it. */
export interface HostRam {
  mem: Uint8Array;
  share: RamShare;
}

/** Maps a backend's file (the engine process: mmap; the simulated world: one buffer per path). */
export interface HostMemory {
  map(backend: MemoryBackendFile, size: number): HostRam;
}

/** Parses `id=mem0,mem-path=/dev/shm/x,share=on` (QEMU's property names); throws what is wrong. */
export function parseMemoryBackend(text: string): MemoryBackendFile {
  const props = new Map<string, string>();
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new Error(`memory backend: '${part}' is not NAME=VALUE`);
    props.set(part.slice(0, eq), part.slice(eq + 1));
  }
  for (const k of props.keys()) {
    if (!["id", "mem-path", "share"].includes(k)) throw new Error(`memory backend: unknown property '${k}'`);
  }
  const id = props.get("id");
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
  return new Uint8Array(
    share instanceof SharedArrayBuffer ? share : mapFileShared(share.memPath, share.size),
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
};

/**
 * The simulated world's host: both sides run in one process, so a shared file is one buffer per path,
 * handed to every side that maps it.
 */
export function memoryRegistry(): HostMemory & { clear(): void } {
  const files = new Map<string, SharedArrayBuffer>();
  return {
    map(b, size) {
      const have = files.get(b.memPath);
      if (!b.share) return privateCopy(have ? new Uint8Array(have) : null, size, b.memPath);
      if (have && have.byteLength !== size) return privateCopy(new Uint8Array(have), size, b.memPath);
      const sab = have ?? new SharedArrayBuffer(size);
      files.set(b.memPath, sab);
      return { mem: new Uint8Array(sab), share: sab };
    },
    clear: () => files.clear(),
  };
}
