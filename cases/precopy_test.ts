import { registerCases } from "../harness/register.ts";
import { PRECOPY_CASES } from "./precopy.ts";

registerCases(PRECOPY_CASES);
