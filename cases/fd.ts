/**
 * Descriptors handed to the sides (upstream's fd test in precopy-tests.c and the fdset tests in
 * file-tests.c): the migration channel as a socket passed with getfd, and the file as an fdset passed
 * with add-fd, opened by the harness with the access each side needs (and O_DIRECT where asked).
 */
import type { MigrationCase } from "../harness/families/mod.ts";

const MULTIFD = { "multifd-channels": 4 };

export const FD_CASES: MigrationCase[] = [
  {
    name: "/migration/precopy/fd/tcp",
    tier: "full",
    flow: "fd",
    why: "each side gets one end of a socketpair with getfd and migrates over it with fd:fd-mig: the " +
      "stream and the return path share the descriptor, and the migration takes the name (closefd finds " +
      "it gone on both sides)",
  },
  {
    name: "/migration/precopy/file/offset/fdset",
    tier: "full",
    flow: "file",
    fileOffset: 4096,
    stopSrc: false,
    fdset: { fds: 1 },
    why: "file:/dev/fdset/1 opens a duplicate of the set's descriptor with the access it needs (write-only " +
      "on the source, read-only on the destination): the stream lands at the offset, the bytes before it " +
      "untouched, and remove-fd leaves no fdset behind",
  },
  {
    name: "/migration/multifd/file/mapped-ram/fdset",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram", "multifd"],
    srcParams: MULTIFD,
    dstParams: MULTIFD,
    fileOffset: 4096,
    stopSrc: true,
    fdset: { fds: 2 },
    why: "every multifd channel opens /dev/fdset/1 for itself and writes its pages at their offsets " +
      "through its own duplicate; afterwards the whole set is removed and query-fdsets is empty",
  },
  {
    name: "/migration/multifd/file/mapped-ram/fdset/dio",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram", "multifd"],
    srcParams: { ...MULTIFD, "direct-io": true },
    dstParams: { ...MULTIFD, "direct-io": true },
    fileOffset: 4096,
    stopSrc: true,
    fdset: { fds: 2, direct: true },
    why: "direct-io through an fdset: the channels must get the set's O_DIRECT descriptor and the main " +
      "channel the other (a dup shares its flags), every page I/O block-aligned",
  },
  {
    name: "/migration/multifd/file/mapped-ram/fdset/dio/direct-first",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram", "multifd"],
    srcParams: { ...MULTIFD, "direct-io": true },
    dstParams: { ...MULTIFD, "direct-io": true },
    fileOffset: 4096,
    stopSrc: true,
    fdset: { fds: 2, direct: true, directFirst: true },
    why: "beyond upstream: the O_DIRECT descriptor first in the set; an open that took the first " +
      "descriptor rather than the one whose flags match would give the main channel's unaligned stream " +
      "to O_DIRECT",
  },
  {
    name: "/migration/precopy/fd/bad/unknown-name",
    tier: "full",
    flow: "fd",
    migrateName: "fd-other",
    expect: "qmp-error",
    error: /^File descriptor named 'fd-other' has not been found$/,
    why: "beyond upstream: migrate fd:NAME with a name this monitor connection was never given is " +
      "refused at once and recorded as failed; the guest runs on and the name it was given is untouched",
  },
  {
    name: "/migration/precopy/file/offset/fdset/bad/no-set",
    tier: "full",
    flow: "file",
    fileOffset: 4096,
    stopSrc: false,
    fdset: { fds: 0 },
    expect: "qmp-error",
    error: /^Failed to find fdset \/dev\/fdset\/1$/,
    why: "beyond upstream: a file:/dev/fdset/N naming a set nobody added is refused by migrate, which " +
      "records the failure; nothing is written",
  },
  {
    name: "/migration/precopy/file/offset/fdset/bad/read-only",
    tier: "full",
    flow: "file",
    fileOffset: 4096,
    stopSrc: false,
    fdset: { fds: 1, srcReadOnly: true },
    expect: "qmp-error",
    error: /^Failed to find file descriptor with matching flags=0x41$/,
    why: "beyond upstream: the source's fdset holds only a read-only descriptor, and a writer opens " +
      "O_CREAT|O_WRONLY: no descriptor matches, so migrate refuses rather than write through the wrong one",
  },
];
