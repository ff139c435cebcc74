/**
 * A producer/consumer queue device ("migtest-queue"). Its post_load rejects inconsistent indices, the
 * way real device models refuse a stream that would put them in an impossible state, and refuses to load
 * over a queue with requests in flight: it must be reset first (what COLO's apply must do).
 */
import type { VMStateDescription } from "../../vmstate.ts";
import { DEV_RING_CONS, DEV_RING_INFLIGHT, DEV_RING_PROD, RING_SIZE } from "../regs.ts";
import type { Device } from "./device.ts";

interface QueueState extends Record<string, unknown> {
  prod: number;
  cons: number;
  size: number;
}

export class QueueDevice implements Device {
  readonly idstr = "migtest-queue";
  readonly instanceId = 0;
  readonly state: QueueState = { prod: 0, cons: 0, size: RING_SIZE };
  readonly vmsd: VMStateDescription<QueueState>;

  constructor(private readonly regs: Int32Array) {
    this.vmsd = {
      name: "migtest-queue",
      versionId: 1,
      minimumVersionId: 1,
      fields: [
        { name: "prod", type: "uint32" },
        { name: "cons", type: "uint32" },
        { name: "size", type: "uint32", equal: true },
      ],
      preSave: (s) => {
        s.prod = regs[DEV_RING_PROD] >>> 0;
        s.cons = regs[DEV_RING_CONS] >>> 0;
        s.size = RING_SIZE;
      },
      preLoad: (s) => {
        s.size = RING_SIZE;
      },
      postLoad: (s) => {
        // Like the devices behind COLO's Q35 crash: loading over a live device needs a reset first.
        const inflight = regs[DEV_RING_INFLIGHT];
        if (inflight !== 0) {
          throw new Error(
            `state loaded over a live queue (${inflight} requests in flight): the device was not reset`,
          );
        }
        const used = (s.prod - s.cons) >>> 0;
        if (used > s.size) {
          throw new Error(`inconsistent queue indices (prod ${s.prod}, cons ${s.cons}, size ${s.size})`);
        }
        regs[DEV_RING_PROD] = s.prod;
        regs[DEV_RING_CONS] = s.cons;
      },
    };
  }

  reset(): void {
    this.regs[DEV_RING_INFLIGHT] = 0;
    this.regs[DEV_RING_PROD] = 0;
    this.regs[DEV_RING_CONS] = 0;
    Object.assign(this.state, { prod: 0, cons: 0, size: RING_SIZE });
  }
}
