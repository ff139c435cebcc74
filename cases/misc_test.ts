import { registerCases } from "../harness/register.ts";
import { MISC_CASES } from "./misc.ts";

registerCases(MISC_CASES);
