/**
 * multifd-zlib: one deflate stream (zlib wrapper) per channel for the whole migration, Z_SYNC_FLUSH
 * after the last page of each packet, no per-packet header.
 */
import zlib from "node:zlib";
import { registerMultifdMethod, scatter, StreamCodec } from "./compression.ts";
import { MULTIFD_FLAG_ZLIB } from "./packet.ts";

registerMultifdMethod({
  name: "zlib",
  flag: MULTIFD_FLAG_ZLIB,
  compressor(level) {
    const c = new StreamCodec(zlib.createDeflate({ level }), zlib.constants.Z_SYNC_FLUSH, "multifd zlib");
    return { compress: (pages) => c.run(pages), close: () => c.close() };
  },
  decompressor() {
    const c = new StreamCodec(zlib.createInflate(), zlib.constants.Z_SYNC_FLUSH, "multifd zlib");
    return {
      decompress: async (payload, dests) => scatter(await c.run([payload]), dests, "multifd zlib"),
      close: () => c.close(),
    };
  },
});
