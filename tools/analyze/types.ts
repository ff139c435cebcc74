/**
 * What the analyzer reports: the shapes of its JSON output (the CLI prints these as they are). Field names
 * are snake_case because they are the output format, as analyze-migration.py's are.
 */
import type { VmdescDevice, VmdescObject, VmJsonObject } from "../../engine/vmdesc.ts";

export interface AnalyzeOptions {
  /** Where the stream starts in the file (a `file:` URI's offset). Default 0. */
  offset?: number;
  /** Also compute a sha-256 of every RAM block's final contents (unsent pages count as zero). */
  ram?: boolean;
}

/** The vmdesc JSON (top-level object written after EOF). */
export interface Vmdesc {
  page_size?: number;
  configuration?: VmdescObject;
  devices: VmdescDevice[];
  [key: string]: unknown;
}

export interface FoundVmdesc {
  /** File offset of the 0x06 byte. */
  offset: number;
  /** Length of the JSON text in bytes. */
  length: number;
  json: Vmdesc;
}

export interface ConfigurationResult {
  offset: number;
  machine_type: string;
  /** Subsection names in stream order. */
  subsections: string[];
  uuid?: string;
  target_page_bits?: number;
  capabilities?: string[];
  /** Subsections decoded from the vmdesc's "configuration" description (ones this tool does not know). */
  other?: VmJsonObject;
}

export type SectionType = "start" | "part" | "end" | "full" | "command" | "eof" | "vmdescription";

export interface SectionRecord {
  type: SectionType;
  /** File offset of the record's type byte. */
  offset: number;
  /** Bytes from the type byte through the footer (or the end of the record). */
  size?: number;
  section_id?: number;
  idstr?: string;
  instance_id?: number;
  version_id?: number;
  /** RAM sections: page records (normal + zero + xbzrle + compressed) in this chunk. */
  pages?: number;
  /** Commands. */
  command?: string;
  cmd?: number;
  len?: number;
  /** PING's be32 value. */
  value?: number;
  /** Set when the record was parsed but its meaning is not interpreted by this tool. */
  note?: string;
}

export interface RamPageCounts {
  normal: number;
  zero: number;
  xbzrle: number;
  /** Old multi-thread compression records (removed in QEMU 9.1). */
  compressed: number;
}

export interface RamBlockResult {
  idstr: string;
  length: number;
  /** length / page size. */
  page_count: number;
  /** Records per kind (a page sent twice counts twice). */
  pages: RamPageCounts;
  /** Distinct pages that appeared in at least one record. */
  pages_sent: number;
  /** Guest physical address (x-ignore-shared streams only). */
  addr?: number;
  /** mapped-ram streams: where the block's bitmap and pages are in the file, and how many pages it holds. */
  mapped_ram?: { bitmap_offset: number; pages_offset: number; pages_present: number };
  /** With `ram: true`: sha-256 (hex) of the block as the destination would hold it, or null if unknowable. */
  sha256?: string | null;
  sha256_note?: string;
}

export interface RamResult {
  page_size: number;
  /** Total announced by MEM_SIZE. */
  total_bytes: number;
  blocks: RamBlockResult[];
  multifd_flushes: number;
  /** EOS records (one per RAM section chunk). */
  eos: number;
  /** Page records across all blocks. */
  records: number;
}

export interface AnalysisResult {
  header: { magic: string; version: number; offset: number };
  configuration: ConfigurationResult | null;
  sections: SectionRecord[];
  ram: RamResult | null;
  /** Device state decoded through the vmdesc, keyed "idstr (instance)" (what `--dump state` prints). */
  devices: Record<string, VmJsonObject>;
  vmdesc: { offset: number; length: number; page_size?: number; devices: number } | null;
  /** Bytes after the vmdesc (or after EOF when there is none). */
  trailing_bytes: number;
  warnings: string[];
}
