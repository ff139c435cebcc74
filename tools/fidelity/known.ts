/**
 * The differences between the model and real QEMU that are understood, each with its reason: the
 * fidelity task reports them as "known". A difference not in this table is a disagreement to look at
 * (a model bug to fix in engine/, or a new row here with why it is not one).
 */
import type { KnownDifference } from "./trace.ts";

export const KNOWN_DIFFERENCES: readonly KnownDifference[] = [];
