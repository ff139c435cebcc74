/**
 * The rate limit's time slots (migration_rate_limit): a migration sends at most max-bandwidth / 10 per
 * BUFFER_DELAY_MS slot, then sleeps to the slot's end.
 */
export const BUFFER_DELAY_MS = 100;

/**
 * Whether the rate limit's slot that began at `start` is over at `now`. A sleep to the slot's end wakes
 * at `now + (end - now)`, which in floating point may fall an ulp short of `start + 100`: compared
 * exactly, the slot never ends on a clock that only moves when something waits (the simulated world),
 * and the loop spins writing empty iterations (found by the file cases in the simulation).
 */
export function slotEnded(now: number, start: number): boolean {
  return now - start >= BUFFER_DELAY_MS - 1e-6;
}
