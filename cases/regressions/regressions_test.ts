import { registerCases } from "../../harness/register.ts";
import { REGRESSION_CASES } from "./all.ts";

registerCases(REGRESSION_CASES);
