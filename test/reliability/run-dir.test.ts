// A run directory under hostile or unlucky conditions, in this process: single bit flips in every
// file, rolling back to an older checkpoint, FIFOs and links in a run, damaged run.json files,
// checkpoint metadata that lies, and config values that must not be trusted. Each case failed
// before the fix it names (issue: "a run directory survives … bit rot").
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { RunStore } from "../../src/tracking/runStore.js";
import { listRuns, readRun } from "../../src/tracking/runReader.js";
import { RunStoreError } from "../../src/tracking/errors.js";
import { scanStream } from "../../src/tracking/ipcScan.js";
import { writeReport } from "../../src/cli/reportCommand.js";
import { buildSafetensors, parseSafetensors } from "./fixtures/safetensors.js";
import { resignMetadata } from "./fixtures/metaChecksum.js";
import { copyRunDir, tinyConfig, withTimeout } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-rundir-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

/** A finished tiny run: `steps` steps, a checkpoint every `every`. */
async function makeRun(
  name: string,
  steps: number,
  every: number,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const t = await Trainer.create(tinyConfig(home, { name, checkpointEvery: every, ...extra }) as never);
  await t.train(steps);
  t.dispose();
  return t.runDir;
}

const events = (dir: string) =>
  readFileSync(join(dir, "events.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

let base = "";
beforeAll(async () => {
  base = await makeRun("base", 12, 6);
});

/** A fresh copy of the base run (lock file excluded: the copy is nobody's). */
const copyRun = (): string => copyRunDir(base, home);

function flipBit(path: string, byte: number, bit: number): void {
  const b = readFileSync(path);
  b[byte]! ^= 1 << bit;
  writeFileSync(path, b);
}

describe("bit flips", () => {
  it("a flipped length field of the first record batch is damage, not a torn tail: refused, nothing truncated", () => {
    const dir = copyRun();
    const path = join(dir, "metrics.arrows");
    const scan = scanStream(readFileSync(path), "metrics.arrows");
    const first = scan.messages[1]!; // messages[0] is the schema
    expect(readRun(dir).metrics.numRows).toBe(12);
    flipBit(path, first.start + 7, 6); // high byte of the metadata length: points past the end
    const damaged = readFileSync(path);
    expect(() => readRun(dir)).toThrow(RunStoreError);
    expect(() => readRun(dir)).toThrow(
      /metrics\.arrows is damaged at byte \d+: message 1 .* does not match its checksum/,
    );
    expect(() => RunStore.open(dir)).toThrow(/metrics\.arrows is damaged/);
    // Nothing was cut: the history is still there for a repair.
    expect(readFileSync(path)).toEqual(damaged);
    // And the lock of the refused open was released.
    expect(existsSync(join(dir, "lock"))).toBe(false);
  });

  it("every single bit flip in either stream or its index is detected or harmless; resume never cuts history", () => {
    const files = ["metrics.arrows", "layers.arrows", "metrics.arrows.index", "layers.arrows.index"];
    const rows = { metrics: readRun(base).metrics.numRows, layers: readRun(base).layers.numRows };
    let detected = 0;
    for (const file of files) {
      const size = readFileSync(join(base, file)).length;
      // 24 positions per file, spread over the whole file, plus its first and last byte.
      const positions = [0, size - 1, ...Array.from({ length: 24 }, (_, i) => Math.floor(((i + 0.5) * size) / 24))];
      for (const [k, at] of positions.entries()) {
        const dir = copyRun();
        flipBit(join(dir, file), at, k % 8);
        const before = Object.fromEntries(files.map((f) => [f, readFileSync(join(dir, f))]));
        let read;
        try {
          read = readRun(dir);
        } catch (e) {
          expect(e, `${file} byte ${at}`).toBeInstanceOf(RunStoreError);
          expect((e as Error).message, `${file} byte ${at}`).toMatch(
            new RegExp(file.replace(".index", "").replace(".", "\\.")),
          );
          detected++;
        }
        // What reads, reads whole: a flip never silently drops rows.
        if (read) {
          expect(read.metrics.numRows, `${file} byte ${at}`).toBe(rows.metrics);
          expect(read.layers.numRows, `${file} byte ${at}`).toBe(rows.layers);
        }
        try {
          RunStore.open(dir).close();
        } catch (e) {
          expect(e, `${file} byte ${at}`).toBeInstanceOf(RunStoreError);
          // A refused open leaves every byte as it was.
          for (const f of files) expect(readFileSync(join(dir, f)), `${file} byte ${at}: ${f}`).toEqual(before[f]);
        }
        rmSync(dir, { recursive: true, force: true });
      }
    }
    expect(detected).toBeGreaterThan(60);
  });

  it("every single bit flip in a checkpoint's tensor data is found on load", async () => {
    const dir = copyRun();
    const ckpt = join(dir, "checkpoints", "step-12.safetensors");
    const good = readFileSync(ckpt);
    const headerEnd = 8 + Number(good.readBigUInt64LE(0));
    const t = await Trainer.resume(dir);
    try {
      for (let i = 0; i < 16; i++) {
        const at = headerEnd + Math.floor(((i + 0.5) * (good.length - headerEnd)) / 16);
        const b = Buffer.from(good);
        b[at]! ^= 1 << (i % 8);
        const p = join(dir, "checkpoints", `flip-${i}.safetensors`);
        writeFileSync(p, b);
        await expect(t.native.load(p), `byte ${at}`).rejects.toThrow(
          // The checksum, or a range check that runs before it (codes outside [-2, 2]).
          /is damaged: its tensor data does not match the checksum|holds values outside/,
        );
      }
      expect(parseSafetensors(good).header.__metadata__!["dataCrc32"]).toMatch(/^[0-9a-f]{8}$/);
    } finally {
      t.dispose();
    }
  });

  it("a flipped bit in run.json or events.jsonl is named, not a crash", () => {
    const dir = copyRun();
    flipBit(join(dir, "run.json"), 2, 1); // the quote before "id"
    expect(() => readRun(dir)).toThrow(/run\.json/);
    expect(listRuns(home).find((r) => r.dir === dir)?.error).toMatch(/run\.json/);
    const dir2 = copyRun();
    const ev = readFileSync(join(dir2, "events.jsonl"));
    flipBit(join(dir2, "events.jsonl"), ev.indexOf("{", 10), 2);
    // Every record carries a checksum: the damaged one is refused by name, not skipped.
    expect(() => readRun(dir2)).toThrow(/events\.jsonl is damaged at line 1 \(byte 0\): the record does not match/);
  });
});

describe("rolling back to an older checkpoint", () => {
  it("needs --fork; then later checkpoints are kept aside, the start is never pruned, and a later resume stays on the branch", async () => {
    const dir = await makeRun("rollback", 30, 10, { keepCheckpoints: 2 });
    expect(readRun(dir).checkpoints.map((c) => c.step)).toEqual([20, 30]);
    const from = join(dir, "checkpoints", "step-20.safetensors");
    await expect(Trainer.resume(from)).rejects.toThrow(
      /step-20 is older than the run's newest checkpoint step-30.*--fork/,
    );
    const t = await Trainer.resume(from, { fork: true });
    expect(t.step).toBe(20);
    await t.train(3); // checkpoints 23; keep 2 would have pruned 20 before
    await t.save();
    t.dispose();
    expect(readRun(dir).checkpoints.map((c) => c.step)).toEqual([20, 23]);
    const aside = readdirSync(join(dir, "checkpoints")).filter((n) => n.startsWith("abandoned-"));
    expect(aside).toHaveLength(1);
    expect(readdirSync(join(dir, "checkpoints", aside[0]!))).toEqual(["step-30.safetensors"]);
    expect(events(dir).find((e) => e.kind === "resume")).toMatchObject({ step: 20, fork: true });
    const again = await Trainer.resume(dir);
    expect(again.step).toBe(23);
    again.dispose();
  });
});

describe("what a run directory may not do", () => {
  it("a FIFO named like a checkpoint does not block resume", async () => {
    const dir = copyRun();
    const fifo = join(dir, "checkpoints", "step-99.safetensors");
    execFileSync("mkfifo", [fifo]);
    const t = await withTimeout(Trainer.resume(dir), 20_000, "resume with a FIFO checkpoint");
    expect(t.step).toBe(12);
    t.dispose();
    await expect(withTimeout(Trainer.resume(fifo), 20_000, "resume from a FIFO")).rejects.toThrow(/not a regular file/);
  });

  it("a FIFO as a stream file is refused instead of blocking readers", async () => {
    const dir = copyRun();
    rmSync(join(dir, "layers.arrows"));
    execFileSync("mkfifo", [join(dir, "layers.arrows")]);
    expect(() => readRun(dir)).toThrow(/layers\.arrows .*not a regular file/);
  });

  it("links inside a run are refused: resume does not write through events.jsonl, report not through figures/", async () => {
    const outside = join(home, "victim-file.txt");
    writeFileSync(outside, "precious\n");
    const dir = copyRun();
    rmSync(join(dir, "events.jsonl"));
    symlinkSync(outside, join(dir, "events.jsonl"));
    await expect(Trainer.resume(dir)).rejects.toThrow(/events\.jsonl .*symbolic link/);
    expect(readFileSync(outside, "utf8")).toBe("precious\n");

    const dir2 = copyRun();
    const elsewhere = join(home, "elsewhere");
    mkdirSync(elsewhere);
    symlinkSync(elsewhere, join(dir2, "figures"));
    await expect(writeReport(dir2, undefined, ["html"])).rejects.toThrow(/figures is a symbolic link/);
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it("config.data.cacheDir from run.json is not used to write", async () => {
    const dir = copyRun();
    const meta = JSON.parse(readFileSync(join(dir, "run.json"), "utf8"));
    const target = join(home, "planted-cache");
    meta.config.data.cacheDir = target;
    writeFileSync(join(dir, "run.json"), JSON.stringify(meta));
    const t = await Trainer.resume(dir);
    t.dispose();
    expect(existsSync(target)).toBe(false);
  });

  it("runs lists every run even when one run.json has a numeric createdAt or no config", async () => {
    const h = join(home, "runs-home");
    mkdirSync(h);
    const good = copyRun();
    execFileSync("cp", ["-r", good, join(h, "good")]);
    for (const [name, edit] of [
      ["numeric-date", (m: Record<string, unknown>) => (m.createdAt = 1764470000000)],
      ["no-config", (m: Record<string, unknown>) => delete m.config],
    ] as const) {
      const d = join(h, name);
      execFileSync("cp", ["-r", good, d]);
      const meta = JSON.parse(readFileSync(join(d, "run.json"), "utf8"));
      edit(meta);
      writeFileSync(join(d, "run.json"), JSON.stringify(meta));
    }
    const list = listRuns(h);
    expect(list).toHaveLength(3);
    expect(list.find((r) => r.dir.endsWith("numeric-date"))!.error).toMatch(/run\.json .*"createdAt" is not a string/);
    expect(list.find((r) => r.dir.endsWith("no-config"))!.error).toMatch(/run\.json .*"config" is not an object/);
    expect(list.find((r) => r.dir.endsWith("good"))!.error).toBeUndefined();
    // The CLI table prints them too.
    const { printRuns } = await import("../../src/cli/runsCommand.js");
    const write = process.stdout.write;
    let out = "";
    process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
    try {
      printRuns(h, false);
    } finally {
      process.stdout.write = write;
    }
    expect(out).toMatch(/error: run\.json/);
    // And resume names the problem instead of "Cannot read properties of undefined".
    await expect(Trainer.resume(join(h, "no-config"))).rejects.toThrow(/run\.json .*"config" is not an object/);
  });

  it("runs flags a damaged layers stream", () => {
    const h = join(home, "runs-layers");
    mkdirSync(h);
    const d = join(h, "r");
    execFileSync("cp", ["-r", copyRun(), d]);
    const b = readFileSync(join(d, "layers.arrows"));
    flipBit(join(d, "layers.arrows"), b.length >> 1, 3);
    expect(listRuns(h, { check: true })[0]!.error).toMatch(/layers\.arrows is damaged/);
  });
});

describe("checkpoint metadata that lies", () => {
  /**
   * The base run's step-12 checkpoint with its metadata edited and signed again (an unsigned edit
   * is refused by its checksum first: test/reliability/resume-checked.test.ts), saved as the
   * run's step-12 in a copy.
   */
  function edited(edit: (meta: Record<string, string>) => void): string {
    const dir = copyRun();
    const path = join(dir, "checkpoints", "step-12.safetensors");
    const p = parseSafetensors(readFileSync(path));
    edit(p.header.__metadata__!);
    resignMetadata(p.header.__metadata__!);
    writeFileSync(path, buildSafetensors(p.header, p.data));
    return path;
  }

  it("primal.extra that is null, not JSON, or holds a bogus config is refused naming the file", async () => {
    const withConfig = (config: unknown) => (m: Record<string, string>) => {
      m["primal.extra"] = JSON.stringify({ ...JSON.parse(m["primal.extra"]!), config });
    };
    const badStep = (m: Record<string, string>) => {
      const extra = JSON.parse(m["primal.extra"]!) as { config: Record<string, unknown> };
      m["primal.extra"] = JSON.stringify({ ...extra, config: { ...extra.config, steps: -1 } });
    };
    for (const [edit, why] of [
      [(m: Record<string, string>) => (m["primal.extra"] = "null"), /metadata 'primal\.extra' must be a JSON object/],
      [(m: Record<string, string>) => (m["primal.extra"] = "{bad"), /metadata 'primal\.extra' is not valid JSON/],
      [withConfig(3), /metadata 'primal\.extra' has a config that is not an object/],
      [badStep, /its checked config is not valid: config\.steps/],
    ] as const) {
      const path = edited(edit);
      await expect(Trainer.resume(path)).rejects.toThrow(
        new RegExp(`checkpoint '.*step-12\\.safetensors': ${why.source}`),
      );
    }
  });

  it("a step near INT_MAX is refused instead of overflowing the optimizer's step", async () => {
    const path = edited((m) => (m.step = "2147483647"));
    await expect(Trainer.resume(path)).rejects.toThrow(/metadata 'step' is out of range: 2147483647/);
  });

  it("an oversized header is refused before it is parsed", async () => {
    const dir = copyRun();
    const path = join(dir, "checkpoints", "step-12.safetensors");
    const big = 24 * 1024 * 1024;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(big));
    writeFileSync(path, Buffer.concat([len, Buffer.alloc(big, 0x20), Buffer.alloc(64)]));
    await expect(Trainer.resume(path)).rejects.toThrow(
      /has a 25165824-byte header; a (primal )?checkpoint (of this model )?has at most \d+/,
    );
  });
});

describe("config values with no bound", () => {
  it("a thread count above the cores is refused", async () => {
    await expect(Trainer.create(tinyConfig(home, { threads: 1000 }) as never)).rejects.toThrow(
      /config\.threads: at most \d+ \(the cores of this machine/,
    );
  });
});
