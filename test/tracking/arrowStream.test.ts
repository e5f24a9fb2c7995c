import { spawnSync } from "node:child_process";
import { appendFileSync, closeSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Field, Float32, Int32, MessageHeader, Schema, Utf8 } from "apache-arrow";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ArrowAppender,
  RunStoreError,
  appendLayerColumns,
  appendMetricsRow,
  layersSchema,
  metricsSchema,
  readArrowStream,
  readArrowStreamBytes,
  scanStream,
  type MetricsInput,
} from "../../src/tracking/index.js";

let work = "";
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "primal-arrow-"));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

let fileNo = 0;
function tmpFile(): string {
  return join(work, `f${fileNo++}.arrows`);
}

function metricsRow(step: number, extra: Partial<MetricsInput> = {}): MetricsInput {
  return {
    step,
    time: 1_700_000_000_000 + step,
    loss: 5 - step / 8,
    lr: 1e-3,
    gradNorm: 0.5,
    tokens: 64 * (step + 1),
    tokensPerSec: 1000 + step,
    stepMs: 12.5,
    peakMemoryBytes: 2 ** 33 + step,
    ...extra,
  };
}

/** A small two-column schema for the byte-level tests. */
const tinySchema = new Schema([
  new Field("i", new Int32(), false),
  new Field("s", new Utf8(), true),
  new Field("x", new Float32(), true),
]);

/** Writes `batches` record batches of 3 rows each, closing with or without EOS. */
function writeTiny(path: string, batches: number, close: boolean): void {
  const a = ArrowAppender.open(path, tinySchema, { flushIntervalMs: 0 });
  for (let b = 0; b < batches; b++) {
    for (let r = 0; r < 3; r++)
      a.append({ i: b * 3 + r, s: r === 1 ? null : `row ${b * 3 + r}`, x: r === 2 ? null : b + r / 4 });
    a.flush();
  }
  if (close) a.close();
  else abandon(a);
}

/** Simulates a crash: stop the appender's timer without flushing or writing EOS. */
function abandon(a: ArrowAppender): void {
  const internals = a as unknown as { timer: ReturnType<typeof setInterval> | null; fd: number | null };
  if (internals.timer) clearInterval(internals.timer);
  internals.timer = null;
  if (internals.fd !== null) closeSync(internals.fd); // no flush, no EOS
  internals.fd = null;
}

describe("ArrowAppender + readArrowStream", () => {
  it("reads back what was appended, with types and nulls", () => {
    const path = tmpFile();
    const a = ArrowAppender.open(path, metricsSchema, { flushIntervalMs: 0 });
    for (let s = 0; s < 10; s++)
      appendMetricsRow(a, metricsRow(s, s % 4 === 0 ? { valLoss: 4 - s / 10, valBpb: 1.5 } : {}));
    a.close();
    const t = readArrowStream(path);
    expect(t.numRows).toBe(10);
    expect(t.schema.fields.map((f) => `${f.name}:${String(f.type)}:${f.nullable}`)).toEqual(
      metricsSchema.fields.map((f) => `${f.name}:${String(f.type)}:${f.nullable}`),
    );
    expect(Array.from(t.getChild("step")!.toArray())).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const row = t.get(4)!.toJSON();
    expect(row["loss"]).toBeCloseTo(4.5);
    expect(row["time"]).toBe(1_700_000_000_004);
    expect(row["peakMemoryBytes"]).toBe(2 ** 33 + 4);
    expect(row["valLoss"]).toBeCloseTo(3.6);
    expect(row["valBpb"]).toBeCloseTo(1.5);
    expect(t.get(5)!.toJSON()["valLoss"]).toBeNull();
    expect(t.get(5)!.toJSON()["valBpb"]).toBeNull();
  });

  it("writes layer columns from typed arrays, filling absent statistics with 0", () => {
    const path = tmpFile();
    const a = ArrowAppender.open(path, layersSchema, { flushIntervalMs: 0 });
    const names = ["blocks.0.attn.q", "blocks.0.attn.k"];
    appendLayerColumns(a, {
      step: 7,
      names,
      scale: new Float32Array([0.5, 0.25]),
      flips: new Int32Array([3, 4]),
      occP2: [10, 20],
    });
    appendLayerColumns(a, { step: 8, names, scale: [1, 2], layer: [5, 6] });
    a.close();
    const t = readArrowStream(path);
    expect(t.numRows).toBe(4);
    expect(t.get(0)!.toJSON()).toMatchObject({
      step: 7,
      layer: 0,
      name: "blocks.0.attn.q",
      scale: 0.5,
      flips: 3,
      occP2: 10,
      dscale: 0,
      voteSaturated: 0,
    });
    expect(t.get(3)!.toJSON()).toMatchObject({ step: 8, layer: 6, name: "blocks.0.attn.k", scale: 2, flips: 0 });
  });

  it("rejects rows that do not fit the schema without writing half a row", () => {
    const path = tmpFile();
    const a = ArrowAppender.open(path, metricsSchema, { flushIntervalMs: 0 });
    expect(() => a.append({ ...metricsRow(0), loss: null })).toThrow(/loss/);
    expect(() => a.append({ ...metricsRow(0), step: "x" })).toThrow(/step/);
    const l = ArrowAppender.open(tmpFile(), layersSchema, { flushIntervalMs: 0 });
    expect(() => appendLayerColumns(l, { step: 1, names: ["a", "b"], scale: [1] })).toThrow(/scale/);
    expect(l.bufferedRows).toBe(0);
    l.close();
    expect(a.bufferedRows).toBe(0);
    appendMetricsRow(a, metricsRow(1));
    a.close();
    expect(readArrowStream(path).numRows).toBe(1);
  });

  it("flushes automatically by row count and by time, with an unref-ed timer", async () => {
    const path = tmpFile();
    const a = ArrowAppender.open(path, tinySchema, { flushRows: 4, flushIntervalMs: 40 });
    const timer = (a as unknown as { timer: NodeJS.Timeout }).timer;
    expect(timer.hasRef()).toBe(false);
    for (let i = 0; i < 4; i++) a.append({ i, s: "a", x: 1 });
    expect(a.bufferedRows).toBe(0);
    expect(readArrowStream(path).numRows).toBe(4);
    a.append({ i: 4, s: "b", x: 2 });
    expect(readArrowStream(path).numRows).toBe(4);
    await new Promise((r) => setTimeout(r, 150));
    expect(a.bufferedRows).toBe(0);
    expect(readArrowStream(path).numRows).toBe(5);
    a.close();
  });

  it("continues one stream across writer instances (close + reopen, and crash + reopen)", () => {
    const path = tmpFile();
    writeTiny(path, 2, true); // ends with EOS
    const b = ArrowAppender.open(path, tinySchema, { flushIntervalMs: 0 });
    expect(b.writtenRows).toBe(6);
    b.append({ i: 6, s: "six", x: 6 });
    b.flush();
    abandon(b); // no EOS, as after a crash
    // Half of a message written by a dying process.
    const good = readFileSync(path);
    appendFileSync(path, good.subarray(good.length - 40, good.length - 10));
    const c = ArrowAppender.open(path, tinySchema, { flushIntervalMs: 0 });
    expect(statSync(path).size).toBe(good.length);
    c.append({ i: 7, s: "seven", x: 7 });
    c.close();

    const bytes = readFileSync(path);
    const scan = scanStream(bytes, "f");
    expect(scan.messages.filter((m) => m.type === MessageHeader.Schema)).toHaveLength(1);
    expect(scan.messages).toHaveLength(1 + 4);
    expect(scan.eos).toBe(true);
    const t = readArrowStream(path);
    expect(Array.from(t.getChild("i")!.toArray())).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(t.get(7)!.toJSON()).toMatchObject({ s: "seven", x: 7 });
    expect(t.get(1)!.toJSON()["s"]).toBeNull();
  });

  it("refuses to append to a file with another schema or a corrupt file, leaving it untouched", () => {
    const path = tmpFile();
    writeTiny(path, 1, true);
    const before = readFileSync(path);
    expect(() => ArrowAppender.open(path, metricsSchema)).toThrow(RunStoreError);
    const bad = Buffer.from(before);
    bad[20] ^= 0xff;
    bad[21] ^= 0xff;
    writeFileSync(path, bad);
    expect(() => ArrowAppender.open(path, tinySchema)).toThrow(RunStoreError);
    expect(readFileSync(path)).toEqual(bad);
  });

  it("handles missing, empty, schema-only and partial-schema files", () => {
    const missing = join(work, "nope.arrows");
    expect(() => readArrowStream(missing)).toThrow(RunStoreError);
    expect(readArrowStream(missing, { schema: tinySchema }).numRows).toBe(0);

    const schemaOnly = tmpFile();
    ArrowAppender.open(schemaOnly, tinySchema).close();
    const t = readArrowStream(schemaOnly);
    expect(t.numRows).toBe(0);
    expect(t.schema.fields.map((f) => f.name)).toEqual(["i", "s", "x"]);

    const partial = tmpFile();
    writeFileSync(partial, readFileSync(schemaOnly).subarray(0, 30));
    expect(() => readArrowStream(partial)).toThrow(/no complete schema/);
    expect(readArrowStream(partial, { schema: tinySchema }).numRows).toBe(0);
    // The appender starts such a file over.
    const a = ArrowAppender.open(partial, tinySchema);
    a.append({ i: 1, s: null, x: null });
    a.close();
    expect(readArrowStream(partial).numRows).toBe(1);

    const empty = tmpFile();
    writeFileSync(empty, "");
    expect(readArrowStream(empty, { schema: tinySchema }).numRows).toBe(0);
  });
});

describe("truncated tails", () => {
  it("returns the first N-1 batches for a cut anywhere inside the last message", () => {
    const path = tmpFile();
    const N = 5;
    writeTiny(path, N, false);
    const bytes = readFileSync(path);
    const scan = scanStream(bytes, "f");
    const last = scan.messages[scan.messages.length - 1]!;
    expect(last.end).toBe(bytes.length);
    for (let cut = last.start; cut < last.end; cut++) {
      const t = readArrowStreamBytes(bytes.subarray(0, cut));
      expect(t.batches.length).toBe(N - 1);
      expect(t.numRows).toBe(3 * (N - 1));
    }
    expect(readArrowStreamBytes(bytes).numRows).toBe(3 * N);
  });

  it("ignores a cut-off EOS marker", () => {
    const path = tmpFile();
    writeTiny(path, 2, true);
    const bytes = readFileSync(path);
    for (let cut = bytes.length - 8; cut <= bytes.length; cut++) {
      expect(readArrowStreamBytes(bytes.subarray(0, cut)).numRows).toBe(6);
    }
  });
});

describe("corrupt input", () => {
  /** Deterministic PRNG so a failure can be replayed. */
  function rng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** Reads and fully materializes; returns 'table' or 'error', fails on any other throw. */
  function attempt(bytes: Uint8Array): "table" | "error" {
    const t0 = performance.now();
    let outcome: "table" | "error";
    try {
      const t = readArrowStreamBytes(bytes);
      for (const row of t) JSON.stringify(row.toJSON(), (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v));
      outcome = "table";
    } catch (e) {
      if (!(e instanceof RunStoreError)) throw e;
      expect(e.message).toMatch(/corrupt|no complete schema/);
      outcome = "error";
    }
    expect(performance.now() - t0).toBeLessThan(5000);
    return outcome;
  }

  it("500 random buffers: a table or a RunStoreError, quickly", () => {
    const rand = rng(1234);
    const schemaMsg = readFileSync(
      (() => {
        const p = tmpFile();
        writeTiny(p, 1, false);
        return p;
      })(),
    );
    const counts = { table: 0, error: 0 };
    for (let i = 0; i < 500; i++) {
      const n = Math.floor(rand() * 4096);
      const b = new Uint8Array(n);
      for (let j = 0; j < n; j++) b[j] = Math.floor(rand() * 256);
      const kind = i % 3;
      if (kind === 1 && n >= 8) {
        // Looks like a message start with a plausible metadata length.
        b.set([0xff, 0xff, 0xff, 0xff]);
        new DataView(b.buffer).setInt32(4, Math.floor(rand() * (n - 8)), true);
      } else if (kind === 2) {
        // A valid prefix followed by garbage.
        b.set(schemaMsg.subarray(0, Math.min(n, Math.floor(rand() * schemaMsg.length))));
      }
      counts[attempt(b)]++;
    }
    expect(counts.table + counts.error).toBe(500);
  });

  it("200 mutations and truncations of a valid file: a table or a RunStoreError, quickly", () => {
    const rand = rng(99);
    const paths = [tmpFile(), tmpFile()];
    writeTiny(paths[0]!, 4, true);
    const l = ArrowAppender.open(paths[1]!, layersSchema, { flushIntervalMs: 0 });
    for (let s = 0; s < 3; s++) {
      appendLayerColumns(l, { step: s, names: ["a", "bb", "ccc"], scale: [1, 2, 3], flips: [s, s, s] });
      l.flush();
    }
    l.close();
    const files = paths.map((p) => new Uint8Array(readFileSync(p)));
    const counts = { table: 0, error: 0 };
    for (let i = 0; i < 200; i++) {
      let b = files[i % 2]!.slice();
      const edits = 1 + Math.floor(rand() * 4);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(rand() * b.length);
        const op = rand();
        if (op < 0.45) b[at] = Math.floor(rand() * 256);
        else if (op < 0.7) b[at]! ^= 1 << Math.floor(rand() * 8);
        else if (op < 0.85) b.fill([0x00, 0xff, 0x7f, 0x80][Math.floor(rand() * 4)]!, at, at + 4);
        else b = b.slice(0, at);
      }
      counts[attempt(b)]++;
    }
    expect(counts.table + counts.error).toBe(200);
    expect(counts.error).toBeGreaterThan(0);
  });

  it("names the byte offset of the corruption", () => {
    const path = tmpFile();
    writeTiny(path, 3, false);
    const bytes = new Uint8Array(readFileSync(path));
    const scan = scanStream(bytes, "f");
    const second = scan.messages[2]!;
    bytes.fill(0x80, second.start + 4, second.start + 8); // negative metadata length
    expect(() => readArrowStreamBytes(bytes, { label: "metrics.arrows" })).toThrow(
      new RegExp(`^metrics\\.arrows is corrupt at byte ${second.start}: `),
    );
  });
});

// pyarrow is the reference reader for the "readable without this project" promise. It is not in
// Debian bookworm's archive; set PYTHON to an interpreter that has it to run this check.
const python = process.env["PYTHON"] ?? "python3";
const hasPyarrow = spawnSync(python, ["-c", "import pyarrow"], { stdio: "ignore" }).status === 0;

describe("pyarrow compatibility", () => {
  it.skipIf(!hasPyarrow)("pyarrow reads a resumed, crash-truncated stream as one table", () => {
    const metrics = tmpFile();
    let a = ArrowAppender.open(metrics, metricsSchema, { flushIntervalMs: 0 });
    for (let s = 0; s < 5; s++) appendMetricsRow(a, metricsRow(s, s === 4 ? { valLoss: 3.5, valBpb: 1.25 } : {}));
    a.close();
    a = ArrowAppender.open(metrics, metricsSchema, { flushIntervalMs: 0 });
    for (let s = 5; s < 8; s++) appendMetricsRow(a, metricsRow(s));
    a.flush();
    abandon(a); // no EOS
    const layers = tmpFile();
    const l = ArrowAppender.open(layers, layersSchema, { flushIntervalMs: 0 });
    appendLayerColumns(l, {
      step: 1,
      names: ["blocks.0.mlp.up", "blocks.0.mlp.down"],
      scale: [0.5, 0.75],
      flips: [1, 2],
    });
    l.close();

    // A copy cut inside its last message, as left by a writer killed mid-write.
    const truncated = tmpFile();
    const whole = readFileSync(metrics);
    writeFileSync(truncated, whole.subarray(0, whole.length - 20));

    // The recipe from docs/run-store.md: read batches until the (possibly partial) end.
    const script = [
      "import json, sys, pyarrow as pa, pyarrow.ipc as ipc",
      "out = []",
      "for p in sys.argv[1:]:",
      '    with open(p, "rb") as f:',
      "        reader = ipc.open_stream(f)",
      "        batches = []",
      "        try:",
      "            for b in reader:",
      "                batches.append(b)",
      "        except (pa.ArrowInvalid, OSError):",
      "            pass",
      "        t = pa.Table.from_batches(batches, schema=reader.schema)",
      '    out.append({"rows": t.num_rows, "schema": [[x.name, str(x.type), x.nullable] for x in t.schema], "data": t.to_pydict()})',
      "print(json.dumps(out))",
    ].join("\n");
    const r = spawnSync(python, ["-c", script, metrics, layers, truncated], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    const [m, ly, tr] = JSON.parse(r.stdout) as {
      rows: number;
      schema: [string, string, boolean][];
      data: Record<string, unknown[]>;
    }[];
    expect(tr!.rows).toBe(5);
    expect(m!.rows).toBe(8);
    expect(m!.data["step"]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(m!.data["valLoss"]).toEqual([null, null, null, null, 3.5, null, null, null]);
    expect(m!.schema.slice(0, 3)).toEqual([
      ["step", "int32", false],
      ["time", "double", false],
      ["loss", "float", false],
    ]);
    expect(m!.schema.at(-1)).toEqual(["valBpb", "float", true]);
    expect(ly!.rows).toBe(2);
    expect(ly!.data["name"]).toEqual(["blocks.0.mlp.up", "blocks.0.mlp.down"]);
    expect(ly!.schema.map((f) => f[0])).toEqual(layersSchema.fields.map((f) => f.name));
  });
});
