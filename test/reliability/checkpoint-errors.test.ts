// Broken checkpoints through the JS API: truncated files, bad headers, wrong dtypes and shapes,
// checkpoints of another model, foreign safetensors. Every load rejects with a message that says
// what is wrong, and the trainer that attempted it keeps its state and trains on unchanged.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { buildSafetensors, parseSafetensors, tensors } from "./fixtures/safetensors.js";
import { tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-ckpt-errors-"));
let t: Trainer;
let good: string;
let goodBytes: Buffer;
let otherModel: string;
let otherQuant: string;

beforeAll(async () => {
  t = await Trainer.create(tinyConfig(home, { name: "victim", seed: 11 }) as never);
  await t.train(10);
  good = join(t.runDir, "checkpoints", "step-10.safetensors");
  goodBytes = readFileSync(good);
  // Same preset, narrower model; and the same model with another quantizer.
  const narrow = await Trainer.create(tinyConfig(home, { name: "narrow", model: { dModel: 32 } }) as never);
  await narrow.train(1);
  otherModel = await narrow.save();
  narrow.dispose();
  const fp = await Trainer.create(tinyConfig(home, { name: "fp", quant: "fp" }) as never);
  await fp.train(1);
  otherQuant = await fp.save();
  fp.dispose();
});
afterAll(() => {
  t?.dispose();
  rmSync(home, { recursive: true, force: true });
});

/** Writes a bad file into the victim's run (names that are not step-N, so never "latest"). */
function bad(name: string, bytes: Buffer | string): string {
  const p = join(t.runDir, "checkpoints", `bad-${name}.safetensors`);
  writeFileSync(p, bytes);
  return p;
}

function snapshot() {
  const n = t.native;
  return {
    step: n.info().step,
    tokens: n.info().tokens,
    knobs: n.getKnobs(),
    codes: Array.from(n.codes("blocks.1.mlp.down")),
    votes: Array.from(n.votes("blocks.0.attn.q")),
    weights: Array.from(n.weights("blocks.1.attn.o")),
    scales: Array.from(n.scales()),
  };
}

let mirrors = 0;
/**
 * A copy of the victim's run holding only `bytes` as its checkpoint step-10: the victim itself is
 * locked by its live trainer (one writer per run), so Trainer.resume goes through the copy.
 */
function mirrorRun(bytes: Buffer): string {
  const dir = join(home, `mirror-${mirrors++}`);
  mkdirSync(join(dir, "checkpoints"), { recursive: true });
  copyFileSync(join(t.runDir, "run.json"), join(dir, "run.json"));
  const ckpt = join(dir, "checkpoints", "step-10.safetensors");
  writeFileSync(ckpt, bytes);
  return ckpt;
}

/** Both ways in: a new trainer via Trainer.resume (on a copy of the run), and load() into the live victim. */
async function expectRejected(path: string, pattern: RegExp) {
  await expect(Trainer.resume(mirrorRun(readFileSync(path)))).rejects.toThrow(pattern);
  await expect(t.native.load(path)).rejects.toThrow(pattern);
}

describe("checkpoint errors", () => {
  it("truncated files name the truncation", async () => {
    const p = parseSafetensors(goodBytes);
    const cuts = [
      0,
      4,
      7,
      8 + (p.headerLength >> 1),
      8 + p.headerLength,
      8 + p.headerLength + 100,
      goodBytes.length >> 1,
      goodBytes.length - 1,
    ];
    for (const cut of cuts) await expectRejected(bad(`cut-${cut}`, goodBytes.subarray(0, cut)), /truncated/);
    await expectRejected(bad("text", "hello"), /truncated/);
  });

  it("bad headers name the header", async () => {
    const p = parseSafetensors(goodBytes);
    // Garbage bytes in the JSON structure (not inside a string, where any byte is allowed).
    const garbage = Buffer.from(goodBytes);
    const at = garbage.indexOf('"data_offsets"', 8);
    garbage.fill(0xff, at, at + 40);
    await expectRejected(bad("garbage", garbage), /header: invalid JSON at byte \d+/);
    // A header length larger than the file, zero, and absurdly large.
    for (const len of [BigInt(goodBytes.length), 0n, 1n << 62n]) {
      const b = Buffer.from(goodBytes);
      b.writeBigUInt64LE(len, 0);
      await expectRejected(bad(`len-${len}`, b), /bad header length/);
    }
    // Valid JSON that is not an object, and an object cut short.
    await expectRejected(bad("array", buildSafetensors([1, 2, 3], Buffer.alloc(0))), /header is not a JSON object/);
    const cutJson = Buffer.concat([
      goodBytes.subarray(0, 8),
      Buffer.from('{"__metadata__":{'.padEnd(p.headerLength, " ")),
      p.data,
    ]);
    await expectRejected(bad("open-object", cutJson), /header: invalid JSON/);
  });

  it("a wrong dtype names the tensor and both dtypes", async () => {
    // "F32" -> "F16" keeps the header length, so offsets and sizes stay consistent.
    const p = parseSafetensors(goodBytes);
    const [name] = tensors(p).find(([, e]) => e.dtype === "F32")!;
    const text = goodBytes.subarray(8, 8 + p.headerLength).toString("utf8");
    const at = text.indexOf(`"${name}":{"dtype":"F32"`);
    expect(at).toBeGreaterThan(0);
    const header = text.slice(0, at) + text.slice(at).replace('"dtype":"F32"', '"dtype":"F16"');
    const b = Buffer.concat([goodBytes.subarray(0, 8), Buffer.from(header, "utf8"), p.data]);
    await expectRejected(
      bad("f16", b),
      new RegExp(`tensor '${name.replace(/\./g, "\\.")}' has dtype F16, expected F32`),
    );
    // The same for an int8 code tensor.
    const codeEntry = tensors(p).find(([k]) => k.startsWith("code."))!;
    const h2 = structuredClone(p.header) as Record<string, { dtype: string }>;
    h2[codeEntry[0]]!.dtype = "U8";
    await expectRejected(bad("u8", buildSafetensors(h2, p.data)), /dtype U8, expected I8/);
  });

  it("shapes and models that do not match are named", async () => {
    await expectRejected(
      bad("narrow", readFileSync(otherModel)),
      /is for a different model \(vocab 256, dModel 32.*this trainer has vocab 256, dModel 64/,
    );
    await expectRejected(bad("fp", readFileSync(otherQuant)), /is for a different model .*quant fp.*quant poltergeist/);
    // One tensor's shape changed in an otherwise consistent file.
    const p = parseSafetensors(goodBytes);
    const [name, entry] = tensors(p).find(([, e]) => e.shape.length === 2)!;
    const h = structuredClone(p.header) as Record<string, { shape: number[] }>;
    h[name]!.shape = [entry.shape[1]!, entry.shape[0]! * 2];
    await expectRejected(bad("shape", buildSafetensors(h, p.data)), /wrong shape/);
    const h3 = structuredClone(p.header) as Record<string, { shape: number[] }>;
    h3[name]!.shape = [entry.shape[0]! * entry.shape[1]!];
    await expectRejected(bad("rank", buildSafetensors(h3, p.data)), /wrong rank/);
    // Offsets past the data section.
    const h4 = structuredClone(p.header) as Record<string, { data_offsets: number[] }>;
    const last = tensors(p).at(-1)![0];
    h4[last]!.data_offsets = h4[last]!.data_offsets.map((x) => x + 64);
    await expectRejected(bad("offsets", buildSafetensors(h4, p.data)), /outside the file/);
    // A missing tensor and codes outside the five levels.
    const h5 = structuredClone(p.header) as Record<string, unknown>;
    delete h5[name];
    await expectRejected(
      bad("missing", buildSafetensors(h5, p.data)),
      new RegExp(`lacks tensor '${name.replace(/\./g, "\\.")}'`),
    );
    const [codeName, code] = tensors(p).find(([k]) => k.startsWith("code."))!;
    const data = Buffer.from(p.data);
    data[code.data_offsets[0] + 3] = 5;
    await expectRejected(
      bad("code5", buildSafetensors(p.header, data)),
      new RegExp(`'${codeName.replace(/\./g, "\\.")}' holds values outside \\[-2, 2\\]`),
    );
  });

  it("foreign safetensors files are not primal checkpoints", async () => {
    const weights = Buffer.alloc(8);
    const foreign = { __metadata__: { format: "pt" }, w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
    await expectRejected(bad("pt", buildSafetensors(foreign, weights)), /not a primal checkpoint/);
    const bare = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
    await expectRejected(bad("bare", buildSafetensors(bare, weights)), /not a primal checkpoint/);
    const p = parseSafetensors(goodBytes);
    const h = structuredClone(p.header);
    h.__metadata__!.format = "primal-checkpoint-999";
    await expectRejected(bad("future", buildSafetensors(h, p.data)), /not a primal checkpoint/);
  });

  it("missing files and directories are named", async () => {
    await expect(Trainer.resume(join(home, "nope"))).rejects.toThrow(/resume: '.*nope' does not exist/);
    await expect(t.native.load(join(home, "nope.safetensors"))).rejects.toThrow(/cannot be opened/);
  });

  it("a run whose newest checkpoint is corrupt resumes from the newest one that loads", async () => {
    const r = await Trainer.create(tinyConfig(home, { name: "corrupt-latest", seed: 11 }) as never);
    await r.train(10);
    const dir = r.runDir;
    r.dispose();
    writeFileSync(join(dir, "checkpoints", "step-99.safetensors"), goodBytes.subarray(0, 5000));
    const again = await Trainer.resume(dir);
    expect(again.step).toBe(10);
    again.dispose();
    // The damaged one is kept, moved aside, so a later resume cannot pick it again.
    const aside = readdirSync(join(dir, "checkpoints")).filter((n) => n.startsWith("damaged-"));
    expect(aside).toHaveLength(1);
    expect(readdirSync(join(dir, "checkpoints", aside[0]!))).toEqual(["step-99.safetensors"]);
    const resume = readFileSync(join(dir, "events.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .find((e) => e.kind === "resume");
    expect(resume.skippedDamaged[0].error).toMatch(/step-99\.safetensors.*truncated/);
  });

  it("a run none of whose checkpoints loads is refused without touching the run", async () => {
    const r = await Trainer.create(tinyConfig(home, { name: "corrupt-all", seed: 11 }) as never);
    await r.train(10);
    const dir = r.runDir;
    r.dispose();
    writeFileSync(join(dir, "checkpoints", "step-10.safetensors"), goodBytes.subarray(0, 5000));
    const before = Object.fromEntries(
      readdirSync(dir)
        .filter((n) => n !== "checkpoints")
        .map((n) => [n, readFileSync(join(dir, n))]),
    );
    await expect(Trainer.resume(dir)).rejects.toThrow(/step-10\.safetensors.*truncated/);
    const after = Object.fromEntries(
      readdirSync(dir)
        .filter((n) => n !== "checkpoints")
        .map((n) => [n, readFileSync(join(dir, n))]),
    );
    expect(after).toEqual(before);
  });

  it("the trainer that saw all of these is unchanged and trains like a clean resume", async () => {
    const before = snapshot();
    // Exercise a rejected load once more right before comparing.
    await expect(t.native.load(otherModel)).rejects.toThrow(/different model/);
    expect(snapshot()).toEqual(before);
    expect(before.step).toBe(10);
    const clean = await Trainer.resume(mirrorRun(goodBytes));
    const a: number[] = [];
    const b: number[] = [];
    await t.train(3, { onStep: (m) => a.push(m.loss) });
    await clean.train(3, { onStep: (m) => b.push(m.loss) });
    clean.dispose();
    expect(a).toEqual(b);
    expect(a.every(Number.isFinite)).toBe(true);
  });
});
