import assert from "node:assert/strict";
import {
  CAPABILITIES,
  checkParameters,
  DEFAULT_PARAMETERS,
  MigrationOptions,
  MODELLED_CAPABILITIES,
  parameterArgTypes,
} from "./options.ts";

Deno.test("options: defaults pass the parameter check", () => {
  assert.equal(checkParameters({ ...DEFAULT_PARAMETERS }), null);
  assert.equal(checkParameters({}), null);
});

Deno.test("options: checkParameters ranges and messages", async (t) => {
  const cases: [string, number, string | null][] = [
    ["downtime-limit", 2000000, null],
    ["downtime-limit", 0, null],
    [
      "downtime-limit",
      2000001,
      "Parameter 'downtime_limit' expects an integer in the range of 0 to 2000000 milliseconds",
    ],
    [
      "downtime-limit",
      -1,
      "Parameter 'downtime_limit' expects an integer in the range of 0 to 2000000 milliseconds",
    ],
    ["multifd-channels", 0, "Parameter 'multifd_channels' expects a value between 1 and 255"],
    ["multifd-channels", 256, "Parameter 'multifd_channels' expects a value between 1 and 255"],
    ["multifd-channels", 1, null],
    ["multifd-channels", 255, null],
    ["multifd-zlib-level", 10, "Parameter 'multifd_zlib_level' expects a value between 0 and 9"],
    ["multifd-zlib-level", 9, null],
    ["multifd-zstd-level", 21, "Parameter 'multifd_zstd_level' expects a value between 0 and 20"],
    [
      "xbzrle-cache-size",
      4095,
      "Parameter 'xbzrle_cache_size' expects a power of two no less than the target page size",
    ],
    ["xbzrle-cache-size", 4096, null],
    [
      "throttle-trigger-threshold",
      0,
      "Parameter 'throttle_trigger_threshold' expects an integer in the range of 1 to 100",
    ],
    ["max-cpu-throttle", 100, "Parameter 'max_cpu_throttle' expects an integer in the range of 1 to 99"],
    [
      "x-checkpoint-delay",
      0x1_0000_0000,
      "Parameter 'x_checkpoint_delay' expects an integer in the range of 0 to 2^32-1",
    ],
    [
      "max-bandwidth",
      -1,
      "Parameter 'max_bandwidth' expects an integer in the range of 0 to 2^64-1 bytes/second",
    ],
    ["announce-step", 10001, "Parameter 'announce_step' expects a value between 1 and 10000"],
    // Not an integer at all.
    [
      "downtime-limit",
      1.5,
      "Parameter 'downtime_limit' expects an integer in the range of 0 to 2000000 milliseconds",
    ],
  ];
  for (const [name, value, message] of cases) {
    await t.step(`${name} = ${value}`, () => {
      assert.equal(checkParameters({ [name]: value }), message);
    });
  }
  await t.step("the first bad value in an update is reported", () => {
    assert.equal(
      checkParameters({ "downtime-limit": 100, "multifd-channels": 0, "multifd-zlib-level": 10 }),
      "Parameter 'multifd_channels' expects a value between 1 and 255",
    );
  });
  await t.step("enums and unknown names are not range-checked here", () => {
    assert.equal(checkParameters({ "zero-page-detection": "legacy", "no-such-thing": 5 }), null);
  });
});

Deno.test("options: parameterArgTypes covers every parameter", () => {
  const types = parameterArgTypes();
  assert.deepEqual(Object.keys(types), Object.keys(DEFAULT_PARAMETERS));
  assert.deepEqual(types["zero-page-detection"], { enum: ["none", "legacy", "multifd"] });
  assert.deepEqual(types["multifd-compression"], { enum: ["none", "zlib", "zstd"] });
  assert.equal(types["downtime-limit"], "int");
});

Deno.test("options: setCapabilities is all-or-nothing", async (t) => {
  await t.step("unknown capability", () => {
    const o = new MigrationOptions();
    assert.equal(
      o.setCapabilities([{ capability: "events", state: true }, { capability: "no-such-cap", state: true }]),
      "Parameter 'capability' does not accept value 'no-such-cap'",
    );
    assert.equal(o.cap("events"), false);
  });
  await t.step("unmodelled capability", () => {
    const o = new MigrationOptions();
    assert.equal(
      o.setCapabilities([
        { capability: "return-path", state: true },
        { capability: "validate-uuid", state: true },
        { capability: "background-snapshot", state: true },
      ]),
      "Capability 'background-snapshot' is not supported by the migtest engine",
    );
    assert.ok(o.queryCapabilities().every((c) => !c.state));
  });
  await t.step("mapped-ram excludes xbzrle and postcopy-ram (migrate_caps_check's texts)", () => {
    const o = new MigrationOptions();
    assert.equal(
      o.setCapabilities([{ capability: "mapped-ram", state: true }, { capability: "xbzrle", state: true }]),
      "Mapped-ram migration is incompatible with xbzrle",
    );
    assert.equal(
      o.setCapabilities([{ capability: "mapped-ram", state: true }, {
        capability: "postcopy-ram",
        state: true,
      }]),
      "Mapped-ram migration is incompatible with postcopy",
    );
    assert.equal(
      o.setCapabilities([{ capability: "mapped-ram", state: true }, { capability: "multifd", state: true }]),
      null,
    );
  });
  await t.step("postcopy-preempt needs postcopy-ram; postcopy-ram and x-colo exclude each other", () => {
    const o = new MigrationOptions();
    assert.equal(
      o.setCapabilities([{ capability: "postcopy-preempt", state: true }]),
      "Postcopy preempt requires postcopy-ram",
    );
    assert.equal(
      o.setCapabilities([{ capability: "postcopy-ram", state: true }, {
        capability: "postcopy-preempt",
        state: true,
      }]),
      null,
    );
    assert.equal(
      o.setCapabilities([{ capability: "x-colo", state: true }]),
      "COLO is not compatible with postcopy-ram",
    );
  });
  await t.step("multifd with xbzrle is refused, as migrate_caps_check does", () => {
    const o = new MigrationOptions();
    assert.equal(o.setCapabilities([{ capability: "multifd", state: true }]), null);
    assert.equal(
      o.setCapabilities([{ capability: "xbzrle", state: true }]),
      "Multifd is not compatible with xbzrle",
    );
    assert.equal(o.cap("xbzrle"), false);
  });
  await t.step("every unmodelled capability is refused when enabled but may be disabled", () => {
    const o = new MigrationOptions();
    for (const c of CAPABILITIES) {
      const err = o.setCapabilities([{ capability: c, state: true }]);
      // postcopy-preempt alone is refused for what it needs, not for being unmodelled.
      if (c === "postcopy-preempt") assert.equal(err, "Postcopy preempt requires postcopy-ram");
      else if (c === "switchover-ack") {
        assert.equal(err, "Capability 'switchover-ack' requires capability 'return-path'");
      } else if (c === "dirty-limit") {
        // Refused first for the dirty ring this side lacks, as QEMU refuses it.
        assert.equal(err, "dirty-limit requires KVM with accelerator property 'dirty-ring-size' set");
      } else if (MODELLED_CAPABILITIES.has(c)) assert.equal(err, null, c);
      else assert.equal(err, `Capability '${c}' is not supported by the migtest engine`);
      assert.equal(o.setCapabilities([{ capability: c, state: false }]), null);
      assert.equal(o.cap(c), false);
    }
  });
  await t.step("a valid list applies in order", () => {
    const o = new MigrationOptions();
    assert.equal(
      o.setCapabilities([
        { capability: "events", state: true },
        { capability: "return-path", state: true },
        { capability: "events", state: false },
        { capability: "pause-before-switchover", state: true },
      ]),
      null,
    );
    assert.deepEqual(o.queryCapabilities().filter((c) => c.state).map((c) => c.capability), [
      "return-path",
      "pause-before-switchover",
    ]);
    // A later failing call leaves the earlier state alone.
    assert.notEqual(
      o.setCapabilities([{ capability: "return-path", state: false }, {
        capability: "background-snapshot",
        state: true,
      }]),
      null,
    );
    assert.equal(o.cap("return-path"), true);
  });
});

Deno.test("options: queryCapabilities lists every capability in QAPI order", () => {
  const o = new MigrationOptions();
  const q = o.queryCapabilities();
  assert.equal(q.length, 22);
  assert.deepEqual(q.map((c) => c.capability), [...CAPABILITIES]);
  assert.equal(q[0].capability, "xbzrle");
  assert.equal(q[10].capability, "multifd");
  assert.equal(q[21].capability, "mapped-ram");
  assert.ok(q.every((c) => c.state === false));
  for (const c of MODELLED_CAPABILITIES) assert.ok(CAPABILITIES.includes(c), c);
});

Deno.test("options: parameters start at QEMU's defaults", () => {
  const o = new MigrationOptions();
  assert.equal(o.params["downtime-limit"], 300);
  assert.equal(o.params["max-bandwidth"], 128 << 20);
  assert.equal(o.params["multifd-channels"], 2);
  assert.equal(o.params["xbzrle-cache-size"], 64 << 20);
  assert.equal(o.params["zero-page-detection"], "multifd");
  // Each instance owns its copy.
  o.params["downtime-limit"] = 1;
  assert.equal(new MigrationOptions().params["downtime-limit"], 300);
});

Deno.test("options: switchover-ack needs return-path, set together or not at all, in QEMU's words", () => {
  const o = new MigrationOptions();
  const needs = "Capability 'switchover-ack' requires capability 'return-path'";
  assert.equal(o.setCapabilities([{ capability: "switchover-ack", state: true }]), needs);
  assert.equal(o.cap("switchover-ack"), false);
  assert.equal(
    o.setCapabilities([{ capability: "return-path", state: true }, {
      capability: "switchover-ack",
      state: true,
    }]),
    null,
  );
  assert.equal(o.setCapabilities([{ capability: "return-path", state: false }]), needs);
  assert.equal(o.cap("return-path"), true, "the refused change left both on");
  assert.equal(
    o.setCapabilities([{ capability: "return-path", state: false }, {
      capability: "switchover-ack",
      state: false,
    }]),
    null,
  );
});
