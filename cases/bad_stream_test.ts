import { registerCases } from "../harness/register.ts";
import { BAD_STREAM_CASES } from "./bad_stream.ts";

registerCases(BAD_STREAM_CASES);
