/** multifd-nocomp: the payload is the packet's normal pages, raw, in offset order. */
import { registerMultifdMethod } from "./compression.ts";
import { MULTIFD_FLAG_NOCOMP } from "./packet.ts";

registerMultifdMethod({
  name: "none",
  flag: MULTIFD_FLAG_NOCOMP,
  compressor: () => null,
  decompressor: () => null,
});
