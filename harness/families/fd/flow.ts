/**
 * The fd flow (upstream's precopy-tests.c, test_migrate_precopy_fd_socket): a socketpair made here, one
 * end passed to each side with getfd on its descriptor monitor, the migration started there with
 * fd:NAME, and afterwards the name gone on both sides (the migration took the descriptor).
 */
import type { FdCase } from "./case.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import { expectFailedToStart, finishByExpectation } from "../../expect.ts";
import { CONVERGE, expectError } from "../../migration_qmp.ts";
import { isAbGuest, waitSerialB } from "../../migration_util.ts";
import { QmpCommandError } from "../../../engine/qmp/client.ts";

export async function fdFlow(p: MigrationPair, c: FdCase): Promise<void> {
  const name = c.fdName ?? "fd-mig";
  const [srcFds, dstFds] = [p.src.fds(), p.dst.fds()];
  const [dstMon, srcMon] = [await dstFds.monitor(), await srcFds.monitor()];
  const [a, b] = srcFds.socketPair();
  try {
    await dstMon.execute("getfd", { fdname: name }, [a]);
    await srcMon.execute("getfd", { fdname: name }, [b]);
  } finally {
    // Each side holds its own copy now; the harness's go (else the channel never sees end of stream).
    srcFds.close(a);
    srcFds.close(b);
  }
  if (c.expect === "qmp-error") {
    // A name the source was not given: refused at once, recorded as failed; the name it has stays.
    // (The destination never starts loading: its end of the pair is only held.)
    const uri = `fd:${c.migrateName ?? name}`;
    const refused = await srcMon.execute("migrate", { uri }).then(() => null, (e) => e);
    if (!(refused instanceof QmpCommandError)) throw new FlowError(`migrate ${uri} was not refused`);
    expectError(c, refused.desc, "migrate");
    await expectFailedToStart(p, c);
    await srcMon.execute("closefd", { fdname: name });
    return;
  }
  await dstMon.execute("migrate-incoming", { uri: `fd:${name}` });
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  await p.setParams(p.src, CONVERGE);
  await srcMon.execute("migrate", { uri: `fd:${c.migrateName ?? name}` });
  await finishByExpectation(p, c, true);
  // The migration took the named descriptor on each side: closefd finds nothing (upstream's end hook).
  for (const [side, mon] of [[p.src, srcMon], [p.dst, dstMon]] as const) {
    const why = await mon.execute("closefd", { fdname: name }).then(
      () => `closefd ${name} succeeded after the migration took it`,
      (e) =>
        e instanceof QmpCommandError && e.desc === `File descriptor named '${name}' not found`
          ? null
          : `closefd ${name}: ${(e as Error).message}`,
    );
    if (why) throw new FlowError(`${side.name}: ${why}`);
  }
}
