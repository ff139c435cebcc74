import { registerCases } from "../harness/register.ts";
import { CANCEL_CASES } from "./cancel.ts";

registerCases(CANCEL_CASES);
