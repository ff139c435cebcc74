/**
 * Register files shared between the main thread and the vCPU worker (Int32Array views of
 * SharedArrayBuffers). The vCPU's program state lives here, not in worker locals, so that a parked vCPU
 * can be saved as the "cpu" device and a destination vCPU resumes exactly where the source stopped.
 */

/** Control block: the main thread writes CMD, the worker acknowledges parking with ACK_GEN. */
export const CTRL_CMD = 0;
export const CTRL_GEN = 1;
/** auto-converge's throttle in percent: the vCPU sleeps that share of its time (cpu_throttle_set). */
export const CTRL_THROTTLE = 2;
export const CTRL_WORDS = 4;
export const CMD_STOP = 0;
export const CMD_RUN = 1;
export const CMD_QUIT = 2;

/** CPU registers: the workload's program counter and data. */
export const CPU_PHASE = 0;
export const CPU_INDEX = 1;
export const CPU_PASS = 2;
export const CPU_RNG = 3; // 4 words of xorshift128 state
export const CPU_STEPS_LO = 7;
export const CPU_STEPS_HI = 8;
export const CPU_WORDS = 16;

/** Device registers the guest drives. */
export const DEV_TIMER_LO = 0;
export const DEV_TIMER_HI = 1;
export const DEV_RING_PROD = 2;
export const DEV_RING_CONS = 3;
/** Requests the guest has in flight on the queue: device-internal, not migrated, cleared by reset. */
export const DEV_RING_INFLIGHT = 4;
export const DEV_WORDS = 8;

/** Ring size of the queue device; post_load rejects prod - cons outside [0, RING_SIZE]. */
export const RING_SIZE = 64;
