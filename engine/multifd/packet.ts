/**
 * Multifd wire formats (migration/multifd.h): the 64-byte channel handshake and the fixed-size RAM
 * packet (header, ramblock name, page offsets) that precedes each payload. All big-endian.
 */
import type { QEMUFileReader, QEMUFileWriter } from "../qemu_file.ts";
import type { RamBlock } from "../ram_block.ts";
import { TARGET_PAGE_SIZE } from "../ram_block.ts";

export const MULTIFD_MAGIC = 0x11223344;
export const MULTIFD_VERSION = 1;

export const MULTIFD_FLAG_SYNC = 0x01;
export const MULTIFD_FLAG_COMPRESSION_MASK = 0x3e;
export const MULTIFD_FLAG_NOCOMP = 0x00;
export const MULTIFD_FLAG_ZLIB = 0x02;
export const MULTIFD_FLAG_ZSTD = 0x04;
export const MULTIFD_FLAG_DEVICE_STATE = 0x40;

/** MULTIFD_PACKET_SIZE: one packet carries at most this much RAM. */
export const MULTIFD_PACKET_SIZE = 512 * 1024;
/** multifd_ram_page_count(): 128 with 4 KiB pages. */
export const MULTIFD_PAGE_COUNT = MULTIFD_PACKET_SIZE / TARGET_PAGE_SIZE;
export const MULTIFD_INIT_SIZE = 64;
const HEADER_SIZE = 64;
const RAMBLOCK_NAME = 256;
/** 64 + 256 + 8 × 128 = 1344 bytes with 4 KiB pages. */
export const MULTIFD_PACKET_LEN = HEADER_SIZE + RAMBLOCK_NAME + 8 * MULTIFD_PAGE_COUNT;

export interface MultifdInit {
  magic: number;
  version: number;
  uuid: Uint8Array;
  id: number;
}

/** MultiFDInit_t: magic, version, uuid[16], id, then padding to 64 bytes. */
export function encodeInit(uuid: Uint8Array, id: number): Uint8Array {
  const b = new Uint8Array(MULTIFD_INIT_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, MULTIFD_MAGIC);
  v.setUint32(4, MULTIFD_VERSION);
  b.set(uuid.subarray(0, 16), 8);
  b[24] = id;
  return b;
}

export function decodeInit(b: Uint8Array): MultifdInit {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { magic: v.getUint32(0), version: v.getUint32(4), uuid: b.slice(8, 24), id: b[24] };
}

export interface MultifdPacket {
  flags: number;
  pagesAlloc: number;
  normalPages: number;
  zeroPages: number;
  nextPacketSize: number;
  packetNum: number;
  /** Block idstr; empty for a SYNC packet without pages. */
  ramblock: string;
  /** Block-relative byte offsets: normal pages first, then zero pages. */
  offsets: number[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function writePacket(f: QEMUFileWriter, p: MultifdPacket): void {
  const b = new Uint8Array(MULTIFD_PACKET_LEN);
  const v = new DataView(b.buffer);
  v.setUint32(0, MULTIFD_MAGIC);
  v.setUint32(4, MULTIFD_VERSION);
  v.setUint32(8, p.flags);
  v.setUint32(12, p.pagesAlloc);
  v.setUint32(16, p.normalPages);
  v.setUint32(20, p.nextPacketSize);
  v.setUint32(24, Math.floor(p.packetNum / 0x1_0000_0000));
  v.setUint32(28, p.packetNum >>> 0);
  v.setUint32(32, p.zeroPages);
  const name = encoder.encode(p.ramblock);
  b.set(name.subarray(0, RAMBLOCK_NAME - 1), HEADER_SIZE);
  p.offsets.forEach((o, i) => {
    v.setUint32(HEADER_SIZE + RAMBLOCK_NAME + 8 * i, Math.floor(o / 0x1_0000_0000));
    v.setUint32(HEADER_SIZE + RAMBLOCK_NAME + 8 * i + 4, o >>> 0);
  });
  f.putBytes(b);
}

/**
 * Reads one packet header and validates it as multifd_ram_unfill_packet does; errors name the channel.
 * `findBlock` resolves the ramblock name (null for an unknown block).
 */
export async function readPacket(
  r: QEMUFileReader,
  channel: number,
  findBlock: (idstr: string) => RamBlock | undefined,
): Promise<MultifdPacket & { block: RamBlock | null }> {
  const at = r.position;
  await r.need(MULTIFD_PACKET_LEN, `multifd packet on channel ${channel}`);
  const b = r.getBytes(MULTIFD_PACKET_LEN);
  const v = new DataView(b.buffer);
  const fail = (msg: string) => r.error(`multifd channel ${channel}: ${msg}`, at);
  const magic = v.getUint32(0);
  if (magic !== MULTIFD_MAGIC) {
    throw fail(
      `received packet magic ${magic.toString(16)} and expected magic ${MULTIFD_MAGIC.toString(16)}`,
    );
  }
  const version = v.getUint32(4);
  if (version !== MULTIFD_VERSION) {
    throw fail(`received packet version ${version} and expected version ${MULTIFD_VERSION}`);
  }
  const flags = v.getUint32(8);
  if (flags & MULTIFD_FLAG_DEVICE_STATE) throw fail("device state packets are not supported");
  const pagesAlloc = v.getUint32(12);
  if (pagesAlloc > MULTIFD_PAGE_COUNT) {
    throw fail(`received packet with size ${pagesAlloc} and expected a size of ${MULTIFD_PAGE_COUNT}`);
  }
  const normalPages = v.getUint32(16);
  if (normalPages > pagesAlloc) {
    throw fail(
      `received packet with ${normalPages} normal pages and expected maximum pages are ${pagesAlloc}`,
    );
  }
  const zeroPages = v.getUint32(32);
  if (zeroPages > pagesAlloc - normalPages) {
    throw fail(
      `received packet with ${zeroPages} zero pages and expected maximum zero pages are ${
        pagesAlloc - normalPages
      }`,
    );
  }
  const nextPacketSize = v.getUint32(20);
  const packetNum = v.getUint32(24) * 0x1_0000_0000 + v.getUint32(28);
  const nameBytes = b.subarray(HEADER_SIZE, HEADER_SIZE + RAMBLOCK_NAME - 1); // byte 255 forced to NUL
  const nul = nameBytes.indexOf(0);
  const ramblock = decoder.decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes);
  const offsets: number[] = [];
  let block: RamBlock | null = null;
  if (normalPages + zeroPages > 0) {
    block = findBlock(ramblock) ?? null;
    if (!block) throw fail(`unknown ram block ${ramblock}`);
    for (let i = 0; i < normalPages + zeroPages; i++) {
      const hi = v.getUint32(HEADER_SIZE + RAMBLOCK_NAME + 8 * i);
      const lo = v.getUint32(HEADER_SIZE + RAMBLOCK_NAME + 8 * i + 4);
      const off = hi * 0x1_0000_0000 + lo;
      if (off > block.usedLength - TARGET_PAGE_SIZE || off % TARGET_PAGE_SIZE !== 0) {
        throw fail(`offset too long ${off.toString(16)} (block ${ramblock})`);
      }
      offsets.push(off);
    }
  }
  return { flags, pagesAlloc, normalPages, zeroPages, nextPacketSize, packetNum, ramblock, offsets, block };
}
