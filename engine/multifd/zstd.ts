/**
 * multifd-zstd: one zstd stream per channel for the whole migration, ZSTD_e_flush after the last page of
 * each packet (never e_end, so one frame spans the channel's life).
 */
import zlib from "node:zlib";
import { registerMultifdMethod, scatter, StreamCodec } from "./compression.ts";
import { MULTIFD_FLAG_ZSTD, MULTIFD_PACKET_SIZE } from "./packet.ts";

registerMultifdMethod({
  name: "zstd",
  flag: MULTIFD_FLAG_ZSTD,
  compressor(level) {
    const stream = zlib.createZstdCompress({ params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
    const c = new StreamCodec(stream, zlib.constants.ZSTD_e_flush, "multifd zstd");
    return { compress: (pages) => c.run(pages), close: () => c.close() };
  },
  decompressor() {
    // Deno's zstd stream may throw a corrupt packet's error out of band (StreamCodec's strayErrors). A
    // packet's whole output in one chunk keeps most such errors in band.
    const stream = zlib.createZstdDecompress({ chunkSize: 2 * MULTIFD_PACKET_SIZE });
    const c = new StreamCodec(stream, zlib.constants.ZSTD_e_flush, "multifd zstd", /^Zstd decompress error/);
    return {
      decompress: async (payload, dests) => scatter(await c.run([payload]), dests, "multifd zstd"),
      close: () => c.close(),
    };
  },
});
