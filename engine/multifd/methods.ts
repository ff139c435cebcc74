/** Registers every multifd compression method (QEMU registers them at migration init). */
import "./nocomp.ts";
import "./zlib.ts";
import "./zstd.ts";
export { multifdMethod } from "./compression.ts";
