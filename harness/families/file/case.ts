/** The file family's record: a stream saved to a file, then loaded (upstream's file-tests.c). */
import type { CaseBase, Outcome } from "../../case.ts";

/** test_file_common: the source saves to a file, then the destination loads it. */
export interface FileCase extends CaseBase, Outcome {
  flow: "file";
  /** file: offset option, as written in the URI (a string lets a case pass a malformed one). */
  fileOffset?: number | string;
  /** Stop the source before saving (upstream's stop_src; default true). */
  stopSrc?: boolean;
  /**
   * The file through fdset 1 (`file:/dev/fdset/1`): each side is given `fds` descriptors of it with
   * add-fd (the source's write-only, the destination's read-only), `direct` setting O_DIRECT on the
   * second, as upstream's fdset tests do; afterwards the source's fdset is removed and must be gone.
   */
  fdset?: {
    fds: number;
    direct?: boolean;
    /** O_DIRECT on the first descriptor instead of the second (the open must match flags, not order). */
    directFirst?: boolean;
    /** The source's descriptors opened read-only: none matches what a writer opens (a bad fdset). */
    srcReadOnly?: boolean;
  };
}
