import { registerCases } from "../harness/register.ts";
import { COLO_CASES } from "./colo.ts";

registerCases(COLO_CASES);
