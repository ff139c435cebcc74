/** migrate_cancel in a postcopy status (upstream skips these; a cancelled postcopy loses the guest). */
import { FlowError, type MigrationPair } from "../../framework.ts";
import type { PostcopyStatus } from "./case.ts";

/** migrate_cancel in a postcopy status must be refused: the guest runs on the destination already. */
export async function expectCancelRefused(p: MigrationPair, status: PostcopyStatus): Promise<void> {
  const s = await p.status(p.src);
  if (s.status !== status) {
    throw new FlowError(`expected the source in '${status}' to try migrate_cancel, found '${s.status}'`);
  }
  const err = await p.src.qmp.execute("migrate_cancel").then(() => null, (e: Error) => e);
  if (!err) {
    const after = await p.status(p.src);
    throw new FlowError(
      `migrate_cancel in '${status}' was accepted (source now '${after.status}'): a cancelled postcopy ` +
        `loses the guest, which runs on the destination already`,
    );
  }
  if (!/cannot cancel/i.test(err.message)) {
    throw new FlowError(`migrate_cancel in '${status}' failed, but not as a refusal: ${err.message}`);
  }
  p.ctx.log(`migrate_cancel in ${status}: refused (${err.message})`);
}
