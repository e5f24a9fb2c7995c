// Run metadata written through the trainer: custom metrics (t.log), tags and notes, and the
// knobs in effect at every step. They round-trip through readRun, `primal runs --json`, the
// `primal tag`/`note` commands, pyarrow (where installed) and, always, a separate process that
// reads the custom metrics with apache-arrow after checking the bytes against the IPC format.
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { compareRuns, listRuns, readRun } from "../../src/tracking/runReader.js";
import { runs } from "../../src/tracking/runsTable.js";
import { metricSeries } from "../../src/tracking/series.js";
import { ensureDist, repoRoot, tinyConfig } from "../reliability/fixtures/common.js";
import { findPython } from "../kernel/python.js";

const run = promisify(execFile);
const home = mkdtempSync(join(tmpdir(), "primal-meta-"));
const bin = join(repoRoot, "bin", "primal.js");
let dir = "";
let plainDir = "";

beforeAll(async () => {
  ensureDist();
  const t = await Trainer.create(tinyConfig(home, { steps: 8, name: "meta" }), {
    tags: ["first"],
    note: "started by the test",
  });
  await t.train(3);
  t.log({ probe: 0.25, "acc@1": 0.5 });
  t.log({ probe: 0.5 }, { step: 5 });
  t.set({ flipRate: 0.02 });
  await t.train(3);
  t.log({ probe: 0.75 });
  expect(t.tag("second", "third")).toEqual(["first", "second", "third"]);
  expect(t.untag("third")).toEqual(["first", "second"]);
  t.note("flip rate doubled at step 3");
  dir = t.runDir;
  t.dispose();
  const plain = await Trainer.create(tinyConfig(home, { steps: 8, name: "plain" }));
  await plain.train(2);
  plainDir = plain.runDir;
  plain.dispose();
}, 300_000);
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe("custom metrics, tags, notes and knobs of every step", () => {
  it("readRun returns them", () => {
    const r = readRun(dir);
    const c = r.custom;
    expect(c.schema.fields.map((f) => `${f.name}:${f.type}`)).toEqual([
      "step:Int32",
      "time:Float64",
      "name:Utf8",
      "value:Float64",
    ]);
    const rows = c.toArray().map((x) => [x.step, x.name, x.value]);
    expect(rows).toEqual([
      [3, "probe", 0.25],
      [3, "acc@1", 0.5],
      [5, "probe", 0.5],
      [6, "probe", 0.75],
    ]);
    expect(r.tags).toEqual(["first", "second"]);
    expect(r.notes.map((n) => [n.text, n.step])).toEqual([
      ["started by the test", 0],
      ["flip rate doubled at step 3", 6],
    ]);
    // Knobs at every one of the 6 steps, the change from step 4 on.
    const k = r.knobs.toArray().filter((x) => x.knob === "flipRate");
    expect(k.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(k.map((x) => Math.fround(x.value))).toEqual([0.01, 0.01, 0.01, 0.02, 0.02, 0.02].map(Math.fround));
    expect(r.knobs.toArray().find((x) => x.knob === "bridge")?.value).toBeCloseTo(2 / 3, 6);
    // The series helper plots a custom metric like a built-in one.
    const s = metricSeries(r, "custom.probe");
    expect(Array.from(s.getChild("step")!.toArray() as Int32Array)).toEqual([3, 5, 6]);
    expect(s.getChild("tokens")!.get(0)).toBe(r.metrics.getChild("tokens")!.get(2));
  });

  it("comparisons see the mid-run knob change", () => {
    const t = compareRuns([dir, plainDir]);
    const names = t.schema.fields.map((f) => f.name);
    expect(names).toContain("knobs.flipRate@end");
    const rows = t.toArray().map((x) => x.toJSON() as Record<string, unknown>);
    expect(rows[0]!["knobs.flipRate@end"]).toBeCloseTo(0.02, 6);
    expect(rows[1]!["knobs.flipRate@end"]).toBeCloseTo(0.01, 6);
    expect(String(rows[0]!["knobs.flipRate changes"])).toMatch(/^0\.01\d*@1 → 0\.02\d*@4$/);
  });

  it("primal runs --json lists tags, notes and final custom metrics; primal tag and note annotate", async () => {
    const tagged = await run(process.execPath, [bin, "tag", dir, "cli-tag", "--home", home]);
    expect(tagged.stdout).toContain("first, second, cli-tag");
    await run(process.execPath, [bin, "note", dir, "a", "note", "from", "the", "CLI"]);
    await expect(run(process.execPath, [bin, "tag", dir, "has space"])).rejects.toThrow(/invalid tag/);
    await expect(run(process.execPath, [bin, "tag", join(home, "nope"), "x"])).rejects.toThrow(/no run/);
    const { stdout } = await run(process.execPath, [bin, "runs", "--json", "--home", home, "--tag", "cli-tag"]);
    const list = JSON.parse(stdout);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({
      dir,
      tags: ["first", "second", "cli-tag"],
      notes: 3,
      custom: { probe: 0.75, "acc@1": 0.5 },
    });
    expect(readRun(dir).notes[2]!.text).toBe("a note from the CLI");
    const t = runs({ home, tag: "cli-tag" });
    expect(t.numRows).toBe(1);
    expect(t.getChild("custom.probe")!.get(0)).toBe(0.75);
    expect(t.getChild("tags")!.get(0)).toBe("first,second,cli-tag");
    expect(listRuns(home, { filter: ["custom.probe>0.7"] }).map((r) => r.dir)).toEqual([dir]);
  }, 60_000);

  it("custom.arrows is an ordinary Arrow IPC stream that another process reads", async () => {
    const bytes = readFileSync(join(dir, "custom.arrows"));
    // IPC stream framing: every message listed in the index starts with the continuation marker
    // and an 8-byte aligned metadata length, the messages follow each other from byte 0, and the
    // closed stream ends with the end-of-stream marker.
    const index = readFileSync(join(dir, "custom.arrows.index"), "utf8").trim().split("\n");
    let next = 0;
    for (const line of index) {
      const [off, len] = line.split(" ").map(Number) as [number, number];
      expect(off).toBe(next);
      expect(bytes.readUInt32LE(off)).toBe(0xffffffff);
      expect((8 + bytes.readInt32LE(off + 4)) % 8).toBe(0);
      next = off + len;
    }
    expect(index.length).toBeGreaterThanOrEqual(2); // the schema and at least one record batch
    expect(next).toBe(bytes.length - 8);
    expect(bytes.subarray(-8)).toEqual(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
    const script = `
      import { readFileSync } from "node:fs";
      import { tableFromIPC } from "apache-arrow";
      const t = tableFromIPC(readFileSync(process.argv[1]));
      process.stdout.write(JSON.stringify(t.toArray().map((r) => r.toJSON())));`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script, join(dir, "custom.arrows")], {
      cwd: repoRoot,
      encoding: "utf8",
    });
    expect(r.status, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout);
    expect(rows.map((x: { name: string; value: number }) => [x.name, x.value])).toEqual([
      ["probe", 0.25],
      ["acc@1", 0.5],
      ["probe", 0.5],
      ["probe", 0.75],
    ]);
  });

  const python = findPython(["pyarrow"]);
  it.skipIf(!python)(
    `pyarrow reads custom metrics, knobs and annotations${!python ? " (skipped: no Python with pyarrow)" : ""}`,
    async () => {
      const script = `
import json, sys, pyarrow.ipc as ipc
d = sys.argv[1]
c = ipc.open_stream(open(d + "/custom.arrows", "rb")).read_all().to_pylist()
k = ipc.open_stream(open(d + "/knobs.arrows", "rb")).read_all().to_pylist()
a = [json.loads(l) for l in open(d + "/annotations.jsonl")]
print(json.dumps({"custom": [[r["step"], r["name"], r["value"]] for r in c], "knobs": len(k), "tags": [x["tag"] for x in a if x["kind"] == "tag"]}))
`;
      const { stdout } = await run(python as string, ["-c", script, dir]);
      const out = JSON.parse(stdout);
      expect(out.custom).toEqual([
        [3, "probe", 0.25],
        [3, "acc@1", 0.5],
        [5, "probe", 0.5],
        [6, "probe", 0.75],
      ]);
      expect(out.knobs).toBe(6 * 7);
      expect(out.tags).toEqual(["first", "second", "third", "cli-tag"]);
    },
  );
});
