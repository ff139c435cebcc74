/**
 * COLO messages (COLOMessage in qapi/migration.json): a bare be32 code on the main stream (primary →
 * secondary) and on the reverse direction of the same connection (secondary → primary). VMSTATE_SIZE is
 * followed by a be64 byte count.
 */
import type { QEMUFileReader, QEMUFileWriter } from "../qemu_file.ts";

export const COLO_MESSAGE = {
  "checkpoint-ready": 0,
  "checkpoint-request": 1,
  "checkpoint-reply": 2,
  "vmstate-send": 3,
  "vmstate-size": 4,
  "vmstate-received": 5,
  "vmstate-loaded": 6,
} as const;
export type ColoMessage = keyof typeof COLO_MESSAGE;
const NAMES = Object.keys(COLO_MESSAGE) as ColoMessage[];
const COLO_MESSAGE_MAX = NAMES.length;

export async function sendColoMessage(f: QEMUFileWriter, msg: ColoMessage, value?: number): Promise<void> {
  f.putBe32(COLO_MESSAGE[msg]);
  if (value !== undefined) f.putBe64(value);
  await f.flush();
}

/** colo_receive_check_message: the next message must be `expect`. */
export async function receiveColoMessage(r: QEMUFileReader, expect: ColoMessage): Promise<void> {
  const at = r.position;
  await r.need(4, `COLO message ${expect}`);
  const code = r.getBe32();
  if (code >= COLO_MESSAGE_MAX) throw r.error(`COLO: received invalid message code ${code}`, at);
  if (NAMES[code] !== expect) {
    throw r.error(`COLO: unexpected message ${NAMES[code]}, expected ${expect}`, at);
  }
}

/** VMSTATE_SIZE + be64. */
export async function receiveColoValue(r: QEMUFileReader, expect: ColoMessage): Promise<number> {
  await receiveColoMessage(r, expect);
  await r.need(8, `${expect} value`);
  return r.getBe64(`${expect} value`);
}
