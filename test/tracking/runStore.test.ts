import {
  appendFileSync,
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { MessageHeader } from "apache-arrow";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  RunStore,
  RunStoreError,
  compareRuns,
  listRuns,
  readRun,
  scanStream,
  type CreateRunOptions,
  type MetricsInput,
} from "../../src/tracking/index.js";

let work = "";
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "primal-runs-"));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

let homeNo = 0;
function freshHome(): string {
  const h = join(work, `home${homeNo++}`);
  mkdirSync(h);
  return h;
}

function baseConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    preset: "small",
    model: { vocab: 256, dModel: 256, layers: 4, heads: 4, ffn: 704, seq: 128 },
    quant: "poltergeist",
    actBits: 8,
    batch: 16,
    lr: 0.002,
    steps: 300,
    seed: 1,
    knobs: { bridge: 0.5, flipRate: 0.01, pMax: 0.1, voteKeep: 0.9, deadzone: 0.1, scaleLr: 0.001 },
    data: { name: "sotu" },
    device: "cpu",
    ...over,
  };
}

function options(home: string, over: Partial<CreateRunOptions> = {}): CreateRunOptions {
  return {
    home,
    config: baseConfig(),
    versions: { primal: "0.1.0", native: "test" },
    device: "cpu",
    seed: 1,
    arrow: { flushIntervalMs: 0 },
    ...over,
  };
}

function metrics(step: number, over: Partial<MetricsInput> = {}): MetricsInput {
  return {
    step,
    loss: 5 - step / 10,
    lr: 1e-3,
    gradNorm: 1,
    tokens: 128 * step,
    tokensPerSec: 1000,
    stepMs: 10,
    peakMemoryBytes: 0,
    ...over,
  };
}

const open: RunStore[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});
function track(s: RunStore): RunStore {
  open.push(s);
  return s;
}

describe("RunStore.create", () => {
  it("makes a sortable, unique run directory with run.json and empty streams", () => {
    const home = freshHome();
    const store = track(RunStore.create(options(home)));
    expect(store.id).toMatch(/^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-poltergeist-small-[0-9a-f]{4}$/);
    expect(store.dir).toBe(join(home, store.id));
    expect(readdirSync(store.dir).sort()).toEqual([
      "checkpoints",
      "events.jsonl",
      "layers.arrows",
      "layers.arrows.index",
      "lock",
      "metrics.arrows",
      "metrics.arrows.index",
      "run.json",
      "samples.jsonl",
    ]);
    const meta = JSON.parse(readFileSync(join(store.dir, "run.json"), "utf8"));
    expect(meta).toMatchObject({
      id: store.id,
      config: baseConfig(),
      versions: { primal: "0.1.0", native: "test", node: process.version },
      device: "cpu",
      seed: 1,
      status: "running",
      step: 0,
    });
    expect(new Date(meta.createdAt).toISOString()).toBe(meta.createdAt);
    expect(meta.name).toBeUndefined();
    const run = readRun(store.dir);
    expect(run.metrics.numRows).toBe(0);
    expect(run.layers.numRows).toBe(0);
  });

  it("uses the name in the id, and PRIMAL_HOME when no home is given", () => {
    const home = freshHome();
    const saved = process.env["PRIMAL_HOME"];
    process.env["PRIMAL_HOME"] = home;
    try {
      const { home: _drop, ...rest } = options(home);
      const store = track(RunStore.create({ ...rest, name: "Bridge sweep #3" }));
      expect(store.dir.startsWith(home)).toBe(true);
      expect(store.id).toMatch(/-bridge-sweep-3-[0-9a-f]{4}$/);
      expect(store.info.name).toBe("Bridge sweep #3");
    } finally {
      if (saved === undefined) delete process.env["PRIMAL_HOME"];
      else process.env["PRIMAL_HOME"] = saved;
    }
  });

  it("never reuses an id, even for many runs in the same second", () => {
    const home = freshHome();
    const ids = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const s = RunStore.create(options(home));
      ids.add(s.id);
      s.close();
    }
    expect(ids.size).toBe(40);
    expect(readdirSync(home)).toHaveLength(40);
  });
});

describe("writing and reading a run", () => {
  it("round-trips metrics, layers, events, samples and status", () => {
    const store = track(RunStore.create(options(freshHome())));
    store.event("start", { step: 0 });
    for (let s = 1; s <= 6; s++) {
      store.appendMetrics(metrics(s, s % 3 === 0 ? { valLoss: 4 - s / 10, valBpb: 1.2 } : {}));
      store.appendLayers({
        step: s,
        names: ["blocks.0.attn.q", "blocks.0.attn.k"],
        scale: new Float32Array([0.1 * s, 0.2 * s]),
      });
    }
    expect(store.step).toBe(6);
    store.event("set", { knob: "bridge", old: 0.5, new: 0.7 });
    store.sample({ prompt: "The", text: "The end", temperature: 0.8, topK: 40, seed: 3 });
    store.setStatus("finished");
    store.close();

    const run = readRun(store.dir);
    expect(run.id).toBe(store.id);
    expect(run.meta.status).toBe("finished");
    expect(run.meta.step).toBe(6);
    expect(run.metrics.numRows).toBe(6);
    expect(run.layers.numRows).toBe(12);
    expect(run.layers.get(11)!.toJSON()).toMatchObject({ step: 6, layer: 1, name: "blocks.0.attn.k" });
    expect(run.events).toHaveLength(2);
    expect(run.events[0]).toMatchObject({ step: 0, kind: "start" });
    expect(run.events[1]).toMatchObject({ step: 6, kind: "set", knob: "bridge", old: 0.5, new: 0.7 });
    expect(Object.keys(run.events[1]!).slice(0, 3)).toEqual(["step", "time", "kind"]);
    expect(typeof run.events[1]!["time"]).toBe("string");
    expect(run.samples).toEqual([
      { step: 6, time: expect.any(String), prompt: "The", text: "The end", temperature: 0.8, topK: 40, seed: 3 },
    ]);
    expect(run.warnings).toEqual([]);
  });

  it("resumes with RunStore.open into the same single-schema streams", () => {
    const first = RunStore.create(options(freshHome()));
    for (let s = 0; s < 3; s++) first.appendMetrics(metrics(s));
    first.flush();
    first.setStatus("stopped", 2);
    first.close();

    const again = track(RunStore.open(first.dir));
    expect(again.id).toBe(first.id);
    expect(again.step).toBe(2);
    again.event("resume");
    for (let s = 3; s < 5; s++) again.appendMetrics(metrics(s));
    again.close();

    const run = readRun(first.dir);
    expect(Array.from(run.metrics.getChild("step")!.toArray())).toEqual([0, 1, 2, 3, 4]);
    const scan = scanStream(readFileSync(join(first.dir, "metrics.arrows")), "metrics.arrows");
    expect(scan.messages.filter((m) => m.type === MessageHeader.Schema)).toHaveLength(1);
    expect(run.events).toEqual([expect.objectContaining({ kind: "resume", step: 2 })]);
  });

  it("rewrites run.json atomically (rename over, no temp files left)", () => {
    const store = track(RunStore.create(options(freshHome())));
    const path = join(store.dir, "run.json");
    // A reader holding the old file keeps seeing a complete old document: the new one is a
    // different file renamed over the name, not an in-place rewrite.
    const reader = openSync(path, "r");
    try {
      const inodeBefore = fstatSync(reader).ino;
      store.setStatus("running", 10);
      store.setStatus("failed", 11);
      expect(statSync(path).ino).not.toBe(inodeBefore);
      expect(JSON.parse(readFileSync(reader, "utf8"))).toMatchObject({ status: "running", step: 0 });
    } finally {
      closeSync(reader);
    }
    expect(JSON.parse(readFileSync(path, "utf8"))).toMatchObject({ status: "failed", step: 11 });
    expect(readdirSync(store.dir).filter((n) => n.includes(".tmp"))).toEqual([]);
    expect(() => store.setStatus("weird" as never)).toThrow(TypeError);
  });

  it("sets a cut-off last JSONL line aside on open, refuses a damaged record by name, keeps a record without its newline", () => {
    const store = RunStore.create(options(freshHome()));
    store.event("start");
    store.sample({ step: 1, prompt: "a", text: "ab", temperature: 1, topK: 0, seed: 1 });
    store.close();
    const events = join(store.dir, "events.jsonl");
    // Every record carries its checksum as its last field.
    expect(readFileSync(events, "utf8")).toMatch(/^\{"step":0,.*"kind":"start","crc32":"[0-9a-f]{8}"\}\n$/);
    appendFileSync(events, '{"step": 2, "kind": "ev');
    let run = readRun(store.dir);
    expect(run.events).toHaveLength(1);
    expect(run.warnings).toEqual([]);

    const again = RunStore.open(store.dir);
    // The cut-off bytes are not deleted: they are copied beside the file before the cut.
    expect(again.setAsideTails).toHaveLength(1);
    expect(basename(again.setAsideTails[0]!)).toMatch(/^events\.jsonl\.tail-/);
    expect(readFileSync(again.setAsideTails[0]!, "utf8")).toBe('{"step": 2, "kind": "ev');
    again.event("resume", { step: 2 });
    again.close();
    run = readRun(store.dir);
    expect(run.events.map((e) => e["kind"])).toEqual(["start", "resume"]);

    // A damaged record is refused by name, like a damaged Arrow message.
    const good = readFileSync(events);
    writeFileSync(events, Buffer.from(good.toString("utf8").replace('"kind":"resume"', '"kind":"resumf"')));
    expect(() => readRun(store.dir)).toThrow(
      /events\.jsonl is damaged at line 2 \(byte \d+\): the record does not match its checksum/,
    );
    expect(() => RunStore.open(store.dir)).toThrow(/events\.jsonl is damaged at line 2 .*primal repair/);
    writeFileSync(events, good);

    // A whole record that only lacks its newline is kept, and terminated on open.
    const samples = join(store.dir, "samples.jsonl");
    const bytes = readFileSync(samples);
    writeFileSync(samples, bytes.subarray(0, bytes.length - 1));
    expect(readRun(store.dir).samples).toHaveLength(1);
    const third = RunStore.open(store.dir);
    expect(third.setAsideTails).toEqual([]);
    third.close();
    expect(readFileSync(samples)).toEqual(bytes);
  });

  it("reads JSONL files written before records carried checksums as before", () => {
    const store = RunStore.create(options(freshHome()));
    store.close();
    const events = join(store.dir, "events.jsonl");
    writeFileSync(
      events,
      '{"step":0,"kind":"start"}\nnot json\n{"step":3,"time":"x","kind":"stop"}\n{"step":4,"kind":"x"}',
    );
    const run = readRun(store.dir);
    expect(run.events.map((e) => e["kind"])).toEqual(["start", "stop", "x"]);
    expect(run.warnings).toEqual(["events.jsonl line 2 is not valid JSON; skipped"]);
    // Appending after them: the old lines stay readable, the new ones are checked.
    const again = RunStore.open(store.dir);
    again.event("resume", { step: 4 });
    again.close();
    expect(readRun(store.dir).events.map((e) => e["kind"])).toEqual(["start", "stop", "x", "resume"]);
  });

  it("manages checkpoints by numeric step", () => {
    const store = track(RunStore.create(options(freshHome())));
    expect(store.latestCheckpoint()).toBeNull();
    const p = store.checkpointPath(100);
    expect(basename(p)).toBe("step-100.safetensors");
    expect(p).toBe(join(store.dir, "checkpoints", "step-100.safetensors"));
    for (const s of [5, 20, 100, 9]) writeFileSync(store.checkpointPath(s), "x");
    writeFileSync(join(store.dir, "checkpoints", "notes.txt"), "ignored");
    expect(store.latestCheckpoint()).toEqual({ step: 100, path: store.checkpointPath(100) });
    const removed = store.pruneCheckpoints(2);
    expect(removed.map((r) => basename(r)).sort()).toEqual(["step-5.safetensors", "step-9.safetensors"]);
    expect(store.checkpoints().map((c) => c.step)).toEqual([20, 100]);
    expect(readRun(store.dir).checkpoints.map((c) => c.step)).toEqual([20, 100]);
    expect(existsSync(join(store.dir, "checkpoints", "notes.txt"))).toBe(true);
    expect(() => store.checkpointPath(-1)).toThrow(TypeError);
    store.pruneCheckpoints(0);
    expect(store.latestCheckpoint()).toBeNull();
  });

  it("throws RunStoreError for a directory that is not a run", () => {
    const dir = join(freshHome(), "empty");
    mkdirSync(dir);
    expect(() => readRun(dir)).toThrow(RunStoreError);
    expect(() => RunStore.open(dir)).toThrow(RunStoreError);
    writeFileSync(join(dir, "run.json"), '{"oops": ');
    expect(() => readRun(dir)).toThrow(RunStoreError);
  });
});

describe("listRuns and compareRuns", () => {
  function makeRuns(home: string): RunStore[] {
    const specs = [
      { quant: "poltergeist", bridge: 0.5, losses: [5, 4, 3.5], val: [null, 3.9, 3.6], tps: [900, 1000, 1100] },
      { quant: "poltergeist", bridge: 0.7, losses: [5, 4.2, 3.4], val: [null, null, 3.3], tps: [800, 850, 2000] },
      { quant: "ste", bridge: 0.5, losses: [5, 4.5, 4.4, 4.6], val: [4.8, null, null, 4.5], tps: [500, 600, 700, 800] },
    ];
    return specs.map((spec, i) => {
      const cfg = baseConfig({
        quant: spec.quant,
        knobs: { ...(baseConfig()["knobs"] as object), bridge: spec.bridge },
      });
      const s = RunStore.create(options(home, { config: cfg }));
      spec.losses.forEach((loss, step) =>
        s.appendMetrics(
          metrics(step, {
            loss,
            valLoss: spec.val[step] ?? null,
            valBpb: spec.val[step] == null ? null : spec.val[step]! / 3,
            tokensPerSec: spec.tps[step]!,
          }),
        ),
      );
      s.setStatus(i === 2 ? "running" : "finished");
      s.close();
      // Distinct, ordered creation times regardless of clock resolution.
      const metaPath = join(s.dir, "run.json");
      const meta = JSON.parse(readFileSync(metaPath, "utf8"));
      meta.createdAt = `2026-01-0${i + 1}T00:00:00.000Z`;
      writeFileSync(metaPath, JSON.stringify(meta));
      return s;
    });
  }

  it("lists runs newest first with headline numbers", () => {
    const home = freshHome();
    const runs = makeRuns(home);
    mkdirSync(join(home, "not-a-run"));
    const list = listRuns(home);
    expect(list.map((r) => r.id)).toEqual([runs[2]!.id, runs[1]!.id, runs[0]!.id]);
    expect(list[0]).toMatchObject({
      quant: "ste",
      preset: "small",
      // Left "running" by a writer that closed without finishing it.
      status: "abandoned",
      step: 3,
      lastLoss: expect.closeTo(4.6, 5),
    });
    expect(list[0]!.bestValLoss).toBeCloseTo(4.5, 5);
    expect(list[2]!.bestValLoss).toBeCloseTo(3.6, 5);
    expect(list[2]!.error).toBeUndefined();
    expect(listRuns(join(home, "missing"))).toEqual([]);

    // A damaged stream does not hide the run.
    writeFileSync(join(runs[1]!.dir, "metrics.arrows"), "garbage!");
    const damaged = listRuns(home).find((r) => r.id === runs[1]!.id)!;
    expect(damaged.status).toBe("finished");
    expect(damaged.error).toMatch(/metrics\.arrows is damaged: it has 8 bytes but its index lists message 0/);
  });

  it("compares runs on the config fields that differ", () => {
    const runs = makeRuns(freshHome());
    const t = compareRuns(runs.map((r) => r.dir));
    expect(t.numRows).toBe(3);
    expect(t.schema.fields.map((f) => f.name)).toEqual([
      "id",
      "quant",
      "knobs.bridge",
      "finalTrainLoss",
      "bestTrainLoss",
      "finalValLoss",
      "bestValLoss",
      "valBpb",
      "tokensPerSec",
      "steps",
    ]);
    expect(String(t.schema.fields[2]!.type)).toBe("Utf8");
    const rows = t.toArray().map((r) => r.toJSON());
    expect(rows[0]).toMatchObject({
      id: runs[0]!.id,
      quant: "poltergeist",
      "knobs.bridge": "0.5",
      steps: 2,
      tokensPerSec: 1000,
    });
    expect(rows[0]!["finalTrainLoss"]).toBeCloseTo(3.5, 5);
    expect(rows[0]!["bestValLoss"]).toBeCloseTo(3.6, 5);
    expect(rows[0]!["valBpb"]).toBeCloseTo(1.2, 5);
    expect(rows[1]).toMatchObject({ "knobs.bridge": "0.7", tokensPerSec: 850 });
    expect(rows[1]!["finalValLoss"]).toBeCloseTo(3.3, 5);
    expect(rows[2]).toMatchObject({ quant: "ste", steps: 3, tokensPerSec: 650 });
    expect(rows[2]!["bestTrainLoss"]).toBeCloseTo(4.4, 5);
    expect(rows[2]!["finalTrainLoss"]).toBeCloseTo(4.6, 5);
    expect(rows[2]!["finalValLoss"]).toBeCloseTo(4.5, 5);

    const single = compareRuns([runs[0]!.dir]);
    expect(single.schema.fields.map((f) => f.name)[1]).toBe("finalTrainLoss");
  });
});
