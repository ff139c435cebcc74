/**
 * A family descriptor: everything the harness knows of one kind of case, in one place — its record type
 * (the `C` here), the fields that record adds, what the types cannot say about it, what it needs of each
 * world, what it adds to the pair's setup, and its flow. The families live in harness/families/<family>/,
 * one folder each; the registry (harness/families/mod.ts) lists them, and from it alone come the case
 * union, the table validation, `--list`'s worlds, the QEMU skip reasons and the flow a case runs. The
 * core (framework, runner, validate, select, the worlds) reads descriptors and names no family.
 */
import type { AnyCase, CaseBase } from "./case.ts";
import type { MigrationPair, PairHooks } from "./framework.ts";
import type { CaseNeeds } from "./world/world.ts";

/** Every field a family's record adds to the base, spelled out: the compiler checks the list is complete. */
export type FieldList<C extends AnyCase> = Record<Exclude<keyof C, keyof CaseBase>, true>;

/** Reports one problem of a case: the field, and what is wrong with it. */
export type Problem = (field: string, problem: string) => void;

/**
 * One flow of a family: the records whose `flow` is `flow`. Its functions are methods, so a descriptor
 * of one record type serves where the registry holds descriptors of any (the registry only ever calls a
 * descriptor with the records of its own flow: it looks them up by `flow`).
 */
export interface FlowDescriptor<C extends AnyCase> extends PairHooks<C> {
  /** The flow's name: the `flow` of its records. */
  readonly flow: C["flow"];
  /** The fields its records add to CaseBase (a field outside it is rejected: the flow would ignore it). */
  readonly fields: FieldList<C>;
  /** What the types cannot say about one case: each problem through `bad` (the base is checked apart). */
  problems?(c: C, bad: Problem): void;
  /** What the case needs of the worlds beyond its base fields (none when absent). */
  needs?(c: C): CaseNeeds;
  /** Drives the pair through the case. */
  run(p: MigrationPair, c: C): Promise<void>;
}

/** The record type of a descriptor. */
export type CaseOfFlow<D> = D extends FlowDescriptor<infer C> ? C : never;

/** Declares a flow descriptor (the identity: it fixes `C` and checks the descriptor against it). */
export function defineFlow<C extends AnyCase>(d: FlowDescriptor<C>): FlowDescriptor<C> {
  return d;
}
