/** The file flow (upstream's file-tests.c, test_file_common): save to a file, then load it. */
import { QEMU_VM_FILE_MAGIC } from "../../../engine/savevm.ts";
import type { FileCase } from "./case.ts";
import type { FileStore } from "../../../engine/transport/file.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import type { Side } from "../../world/world.ts";
import type { StreamMutator } from "../../wire_mutate.ts";
import { expectFailedToStart, expectTargetFailed, finishByExpectation } from "../../expect.ts";
import { CONVERGE, expectError, migrate, migrateIncoming } from "../../migration_qmp.ts";
import { isAbGuest, waitSerialB } from "../../migration_util.ts";

/** The first `n` bytes of a file (fewer if it is shorter), where the side's files live. */
async function head(files: FileStore, path: string, n: number): Promise<Uint8Array> {
  const f = await files.incoming(path, 0);
  try {
    const buf = new Uint8Array(n);
    return buf.subarray(0, await f.pread(buf, 0));
  } finally {
    f.close();
  }
}

/** Writes `bytes` at the start of a file, where the side's files live. */
async function writeHead(files: FileStore, path: string, bytes: Uint8Array): Promise<void> {
  const f = await files.outgoing(path, 0);
  try {
    await f.write(bytes);
  } finally {
    f.close();
  }
}

/** The fuzzer's edits of the saved file (harness/wire_mutate.ts): read whole, edited, written back. */
async function mangle(files: FileStore, path: string, m: StreamMutator): Promise<void> {
  const parts: Uint8Array[] = [];
  const f = await files.incoming(path, 0);
  try {
    const buf = new Uint8Array(1 << 20);
    for (let n = await f.read(buf); n !== null; n = await f.read(buf)) parts.push(m.apply(buf.slice(0, n)));
  } finally {
    f.close();
  }
  const out = await files.outgoing(path, 0);
  try {
    for (const p of parts) await out.write(p);
    out.truncateToEnd();
  } finally {
    out.close();
  }
}

/** The fdset the file goes through, as upstream's fdset tests number it. */
const FDSET = 1;

/** add-fd of `fdset.fds` descriptors of the file to fdset 1 on `side` (O_DIRECT on the second if asked). */
async function addFdset(p: MigrationPair, side: Side, write: boolean, fdset: NonNullable<FileCase["fdset"]>) {
  const fds = side.fds();
  const mon = await fds.monitor();
  for (let i = 0; i < fdset.fds; i++) {
    const fd = fds.openFile(p.migfile, {
      write,
      create: write,
      direct: fdset.direct === true && i === (fdset.directFirst ? 0 : 1),
    });
    try {
      await mon.execute("add-fd", { "fdset-id": FDSET }, [fd]);
    } finally {
      fds.close(fd);
    }
  }
}

/** Upstream's end hook: remove-fd of the whole set, after which query-fdsets lists nothing. */
async function removeFdset(side: Side): Promise<void> {
  await side.qmp.execute("remove-fd", { "fdset-id": FDSET });
  const left = await side.qmp.execute<unknown[]>("query-fdsets");
  if (left.length) throw new FlowError(`${side.name}: query-fdsets after remove-fd: ${JSON.stringify(left)}`);
}

/**
 * cpr-reboot with a running guest: the source stops before the migration goes active, so no RAM is
 * saved from a running guest (the image is what a restarted QEMU resumes from).
 */
function expectStoppedFirst(p: MigrationPair, since: number): void {
  const events = p.src.qmp.events.slice(since);
  const stop = events.findIndex((e) => e.event === "STOP");
  const active = events.findIndex((e) => e.event === "MIGRATION" && e.data?.status === "active");
  if (stop < 0 || active < 0 || stop > active) {
    throw new FlowError(
      "cpr-reboot: the running source must stop before the migration goes active (before any RAM is " +
        `saved); its events since migrate: ${
          events.map((e) => `${e.event}${e.data?.status ? `(${e.data.status})` : ""}`).join(" ")
        }`,
    );
  }
}

/** test_file_common: the source (optionally stopped first) saves to a file; the destination loads it. */
export async function fileFlow(p: MigrationPair, c: FileCase): Promise<void> {
  const path = c.fdset ? `/dev/fdset/${FDSET}` : p.migfile;
  const uri = c.fileOffset !== undefined ? `file:${path},offset=${c.fileOffset}` : `file:${path}`;
  const offset = typeof c.fileOffset === "number" ? c.fileOffset : 0;
  const files = p.src.files();
  if (offset > 0) await writeHead(files, p.migfile, new Uint8Array(offset).fill(0x58));
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  if (c.stopSrc !== false) {
    await p.src.qmp.execute("stop");
    await p.waitEvent(p.src, "STOP");
  }
  await p.setParams(p.src, CONVERGE);
  if (c.fdset) await addFdset(p, p.src, !c.fdset.srcReadOnly, c.fdset);
  const since = p.src.qmp.events.length;
  if (!await migrate(p, uri, { outcome: c })) {
    if (c.fdset) await expectFailedToStart(p, c);
    return;
  }
  await p.waitStatus(p.src, "completed");
  if (c.stopSrc === false && c.srcParams?.mode === "cpr-reboot") expectStoppedFirst(p, since);
  if (offset > 0) {
    const bytes = await head(files, p.migfile, offset + 4);
    if (!bytes.subarray(0, offset).every((b) => b === 0x58)) {
      throw new FlowError(`bytes before offset ${offset} were changed`);
    }
    const magic = bytes.length === offset + 4 ? new DataView(bytes.buffer).getUint32(offset) : -1;
    if (magic !== QEMU_VM_FILE_MAGIC) {
      throw new FlowError(`no QEVM magic at offset ${offset} (found 0x${magic.toString(16)})`);
    }
  }
  if (p.fileMutator) await mangle(files, p.migfile, p.fileMutator);
  if (c.expect === "fail") {
    // The file is whole and the destination refuses it: it stays up (exit-on-error off, where it has
    // it) with the cause in error-desc or on stderr; the saved source stays as it was.
    await migrateIncoming(p, uri, false);
    await expectTargetFailed(p);
    const st = p.dstExitsOnError ? {} : await p.dst.qmp.execute<Record<string, unknown>>("query-migrate");
    if (!c.error?.test(p.dst.stderr)) expectError(c, String(st["error-desc"] ?? ""), "target");
    await p.src.qmp.execute("query-status");
    return;
  }
  if (c.fdset) await addFdset(p, p.dst, false, c.fdset);
  // A mangled file's destination stays up to be asked (where the world can keep it up).
  await migrateIncoming(p, uri, c.expect === "survives" ? false : undefined);
  await finishByExpectation(p, c, false);
  if (c.fdset) await removeFdset(p.src);
}
