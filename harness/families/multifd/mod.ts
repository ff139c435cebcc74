/**
 * The multifd family's own flow (upstream's test_multifd_tcp_cancel); the other multifd cases are
 * precopy cases with the multifd capability.
 */
import { defineFlow } from "../../family.ts";
import { capsOf, SOCKET_FIELDS, socketProblems } from "../../validate.ts";
import type { MultifdCancelCase } from "./case.ts";
import { multifdCancelFlow } from "./flow.ts";

export const multifdCancel = defineFlow<MultifdCancelCase>({
  flow: "multifd-cancel",
  fields: { ...SOCKET_FIELDS, flow: true },
  problems(c, bad) {
    socketProblems(c, bad);
    if (!capsOf(c, "src").includes("multifd")) {
      bad("caps", "a multifd-cancel case needs the multifd capability");
    }
    if (!c.defer) bad("defer", "the multifd-cancel flow sends migrate-incoming itself: set defer");
  },
  socket: (c) => c,
  run: multifdCancelFlow,
});

/** The multifd family's flows (one entry of the registry). */
export const MULTIFD = [multifdCancel] as const;
