/** The message of anything thrown: an Error's message, else its string form (a rejected non-Error). */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Anything thrown as an Error (a rejected non-Error becomes one with its string form). */
export function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
