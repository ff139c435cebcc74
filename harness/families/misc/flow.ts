/** Misc flows (upstream's misc-tests.c): a destination nobody listens on. */
import type { BadDestCase } from "./case.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import { expectSourceFailedAndAlive } from "../../expect.ts";
import { migrate } from "../../migration_qmp.ts";
import { waitSerialB } from "../../migration_util.ts";

/** /migration/bad_dest: nothing listens where the source connects; it fails and keeps running. */
export async function badDestFlow(p: MigrationPair, _c: BadDestCase): Promise<void> {
  await waitSerialB(p, p.src);
  await migrate(p, "tcp:127.0.0.1:0");
  await expectSourceFailedAndAlive(p, true);
  const s = await p.status(p.src);
  if (!/Failed to connect/.test(String(s["error-desc"]))) {
    throw new FlowError(`source error-desc does not say the connect failed: ${s["error-desc"]}`);
  }
}
