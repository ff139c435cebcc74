/** Every case family, in the order the matrix runs them. */
import type { MigrationCase } from "../harness/families/mod.ts";
import { validateCases } from "../harness/families/mod.ts";
import { BAD_STREAM_CASES } from "./bad_stream.ts";
import { CANCEL_CASES } from "./cancel.ts";
import { COLO_CASES } from "./colo.ts";
import { CPR_CASES } from "./cpr.ts";
import { CROSS_VERSION_CASES } from "./cross_version.ts";
import { DIRTYRATE_CASES } from "./dirtyrate.ts";
import { FD_CASES } from "./fd.ts";
import { FILE_CASES } from "./file.ts";
import { TLS_CASES } from "./tls.ts";
import { MISC_CASES } from "./misc.ts";
import { MULTIFD_CASES } from "./multifd.ts";
import { POSTCOPY_CASES } from "./postcopy.ts";
import { PRECOPY_CASES } from "./precopy.ts";
import { REGRESSION_CASES } from "./regressions/all.ts";

/** Validated when it loads: a bad record or a name used twice across families stops the run. */
export const ALL_CASES: readonly MigrationCase[] = validateCases([
  ...PRECOPY_CASES,
  ...CROSS_VERSION_CASES,
  ...MULTIFD_CASES,
  ...FILE_CASES,
  ...FD_CASES,
  ...TLS_CASES,
  ...COLO_CASES,
  ...POSTCOPY_CASES,
  ...CANCEL_CASES,
  ...MISC_CASES,
  ...CPR_CASES,
  ...DIRTYRATE_CASES,
  ...BAD_STREAM_CASES,
  ...REGRESSION_CASES,
]);
