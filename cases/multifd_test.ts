import { registerCases } from "../harness/register.ts";
import { MULTIFD_CASES } from "./multifd.ts";

registerCases(MULTIFD_CASES);
