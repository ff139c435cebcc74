/**
 * A 16550-style UART ("serial") whose output goes to a file, like `-serial file:PATH`. The guest only
 * transmits; what matters for migration is the register file and the transmit accounting, which travels
 * in a subsection sent only once something was transmitted (QEMU's way of adding state compatibly).
 */
import type { VMStateDescription } from "../../vmstate.ts";
import type { Device } from "./device.ts";

interface SerialState extends Record<string, unknown> {
  divider: number;
  rbr: number;
  ier: number;
  iir: number;
  lcr: number;
  mcr: number;
  lsr: number;
  msr: number;
  scr: number;
  fcr: number;
  txCount: number;
  lastTx: number;
}

const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const IIR_NO_INT = 0x01;

function powerOn(): SerialState {
  return {
    divider: 12,
    rbr: 0,
    ier: 0,
    iir: IIR_NO_INT,
    lcr: 0x03,
    mcr: 0,
    lsr: LSR_THRE | LSR_TEMT,
    msr: 0xb0,
    scr: 0,
    fcr: 0,
    txCount: 0,
    lastTx: 0,
  };
}

export class SerialDevice implements Device {
  readonly idstr = "serial";
  readonly instanceId = 0;
  readonly state: SerialState = powerOn();
  readonly vmsd: VMStateDescription<SerialState> = {
    name: "serial",
    versionId: 3,
    minimumVersionId: 2,
    fields: [
      { name: "divider", type: "uint16", versionId: 2 },
      { name: "rbr", type: "uint8" },
      { name: "ier", type: "uint8" },
      { name: "iir", type: "uint8" },
      { name: "lcr", type: "uint8" },
      { name: "mcr", type: "uint8" },
      { name: "lsr", type: "uint8" },
      { name: "msr", type: "uint8" },
      { name: "scr", type: "uint8" },
      { name: "fcr", type: "uint8", versionId: 3 },
    ],
    subsections: [{
      name: "serial/tx",
      versionId: 1,
      minimumVersionId: 1,
      needed: (s) => this.txSubsection && s.txCount > 0,
      fields: [{ name: "txCount", type: "uint32" }, { name: "lastTx", type: "uint8" }],
    }],
    postLoad: (s) => {
      if ((s.lcr & 0x80) !== 0 && s.divider === 0) {
        throw new Error("serial: divisor latch set with divider 0");
      }
    },
  };
  readonly #encoder = new TextEncoder();

  /**
   * `out` receives every transmitted byte (the -serial file). `txSubsection` false: the transmit
   * accounting stays home (QEMU's serial has no such subsection and refuses a stream that carries one).
   */
  constructor(private readonly out: (bytes: Uint8Array) => void, private readonly txSubsection = true) {}

  transmit(ch: string): void {
    const bytes = this.#encoder.encode(ch);
    this.out(bytes);
    this.state.txCount = (this.state.txCount + bytes.length) >>> 0;
    this.state.lastTx = bytes[bytes.length - 1];
    this.state.lsr |= LSR_THRE | LSR_TEMT;
  }

  reset(): void {
    Object.assign(this.state, powerOn());
  }
}
