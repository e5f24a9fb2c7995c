// Fuzzing the two readers that take bytes from disk: the native checkpoint loader and the run
// store's Arrow readers. Every call must resolve or reject/throw a proper error in bounded time,
// never crash or hang the process; afterwards the trainer still trains exactly as before.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { readRun } from "../../src/tracking/runReader.js";
import { RunStoreError } from "../../src/tracking/errors.js";
import { buildSafetensors, parseSafetensors, tensors } from "./fixtures/safetensors.js";
import { tinyConfig, withTimeout } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-fuzz-"));
const scratch = mkdtempSync(join(tmpdir(), "primal-fuzz-files-"));
let t: Trainer;
let good: string;
let goodBytes: Buffer;

beforeAll(async () => {
  t = await Trainer.create(tinyConfig(home, { name: "fuzz", seed: 21 }) as never);
  await t.train(10);
  good = join(t.runDir, "checkpoints", "step-10.safetensors");
  goodBytes = readFileSync(good);
});
afterAll(() => {
  t?.dispose();
  rmSync(home, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});

/** mulberry32: a tiny seeded PRNG so that a failing case can be replayed. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  return { next, int, pick, bytes };
}
type Rng = ReturnType<typeof rng>;

const lengthPrefix = (n: number | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

/** A random JSON-ish value: deep nests, odd numbers, strings with escapes, primal-looking keys. */
function randomJson(r: Rng, depth = 0): string {
  const leaf = () =>
    r.pick([
      () => String(r.int(1e6) - 5e5),
      () => r.pick(["1e400", "-0", "0.5", "1e-400", "9007199254740993", "NaN", "--1", "1e", "00"]),
      () => JSON.stringify(r.pick(["F32", "I8", "F16", "primal-checkpoint-1", "", "\u0000", "\\u12", "\uD800x"])),
      () => r.pick(["true", "false", "null", "tru", "nul"]),
      () => JSON.stringify(r.bytes(r.int(12)).toString("latin1")),
    ])();
  // The leaf probability grows with depth so a value stays small; deep nesting comes from chains.
  if (depth === 0 && r.next() < 0.15) {
    const n = 60 + r.int(10); // around the parser's nesting limit (64)
    return "[".repeat(n) + leaf() + "]".repeat(n);
  }
  if (r.next() < 0.3 + depth * 0.15) return leaf();
  if (r.next() < 0.5) {
    const n = r.int(5);
    return (
      "[" +
      Array.from({ length: n }, () => randomJson(r, depth + 1)).join(r.pick([",", ",", ", ", ""])) +
      r.pick(["]", "]", ""])
    );
  }
  const keys = [
    "__metadata__",
    "format",
    "config",
    "knobs",
    "step",
    "dtype",
    "shape",
    "data_offsets",
    "param.tok_emb",
    "x",
  ];
  const n = r.int(5);
  return (
    "{" +
    Array.from({ length: n }, () => `${JSON.stringify(r.pick(keys))}:${randomJson(r, depth + 1)}`).join(",") +
    r.pick(["}", "}", ""])
  );
}

/** 300 files that were never checkpoints. */
function randomFile(r: Rng, i: number): Buffer {
  switch (i % 3) {
    case 0:
      return r.bytes(r.int(2048));
    case 1: {
      // A plausible length prefix, then random bytes.
      const body = r.bytes(8 + r.int(1024));
      return Buffer.concat([lengthPrefix(r.int(body.length + 1)), body]);
    }
    default: {
      // A random JSON header, sometimes claiming to be a primal checkpoint.
      const json =
        r.next() < 0.5
          ? randomJson(r)
          : `{"__metadata__":{"format":"primal-checkpoint-1","config":${JSON.stringify(randomJson(r))},"knobs":${JSON.stringify(randomJson(r))},"step":"1"},"a":${randomJson(r)}}`;
      // Occasionally nest very deeply: the parser must refuse, not overflow the stack.
      const text = r.next() < 0.1 ? "[".repeat(100_000) + "]".repeat(100_000) : json;
      const data = r.bytes(r.int(256));
      return Buffer.concat([lengthPrefix(Buffer.byteLength(text)), Buffer.from(text, "utf8"), data]);
    }
  }
}

/** 300 damaged versions of the good checkpoint. */
function mutate(r: Rng, i: number): Buffer {
  const p = parseSafetensors(goodBytes);
  const headerEnd = 8 + p.headerLength;
  switch (i % 6) {
    case 0: // truncation, mostly inside or near the header
      return goodBytes.subarray(0, r.next() < 0.6 ? r.int(headerEnd + 64) : r.int(goodBytes.length));
    case 1: {
      // a few flipped bytes in the header
      const b = Buffer.from(goodBytes);
      for (let k = 1 + r.int(8); k > 0; k--) b[8 + r.int(p.headerLength)] = r.int(256);
      return b;
    }
    case 2: {
      // flipped bytes anywhere (may still load: data bytes are not checksummed)
      const b = Buffer.from(goodBytes);
      for (let k = 1 + r.int(16); k > 0; k--) b[r.int(b.length)] = r.int(256);
      return b;
    }
    case 3: {
      // a wrong header length
      const b = Buffer.from(goodBytes);
      const len = r.pick([
        0n,
        1n,
        BigInt(p.headerLength - 1 - r.int(16)),
        BigInt(p.headerLength + 1 + r.int(4096)),
        BigInt(r.int(2 ** 31)) << BigInt(r.int(33)),
      ]);
      b.writeBigUInt64LE(BigInt.asUintN(64, len), 0);
      return b;
    }
    case 4: {
      // bytes inserted into or removed from the header, the length adjusted or not
      const text = goodBytes.subarray(8, headerEnd);
      const at = r.int(text.length);
      const edited =
        r.next() < 0.5
          ? Buffer.concat([text.subarray(0, at), r.bytes(1 + r.int(16)), text.subarray(at)])
          : Buffer.concat([text.subarray(0, at), text.subarray(Math.min(text.length, at + 1 + r.int(16)))]);
      const len = r.next() < 0.7 ? edited.length : p.headerLength;
      return Buffer.concat([lengthPrefix(len), edited, p.data]);
    }
    default: {
      // a well-formed file whose header says the wrong things
      const h = structuredClone(p.header) as Record<string, Record<string, unknown>>;
      const entries = tensors(p);
      const [name] = r.pick(entries);
      const odd = () => r.pick<unknown>([-1, 0, 1, 64, 1e300, -1e300, 0.5, 2 ** 53, "64", null, [], {}, true]);
      const meta = h.__metadata__!;
      switch (r.int(6)) {
        case 0:
          h[name]!.dtype = r.pick(["F64", "I64", "BF16", "U8", "BOOL", "", 7, null]);
          break;
        case 1:
          h[name]!.shape = Array.from({ length: r.int(4) }, odd);
          break;
        case 2:
          h[name]!.data_offsets = r.pick([[odd(), odd()], [0], [0, 1, 2], "0,1", null, [-4, 4092]]);
          break;
        case 3:
          meta[r.pick(["step", "tokens", "seed"])] = r.pick([
            "-1",
            "abc",
            "",
            "99999999999999999999",
            "1e9",
            "0x10",
            " 5",
            "18446744073709551616",
          ]);
          break;
        case 4: {
          // the embedded config/knobs JSON strings, edited
          const key = r.pick(["config", "knobs"]);
          const s = String(meta[key]);
          const at = r.int(s.length);
          meta[key] = r.pick([
            s.slice(0, at),
            s.slice(0, at) + r.pick(['"', "}", "null", "1e999", "-"]) + s.slice(at + 1),
            s.replace(/[0-9.]+/, r.pick(["-5", "1e39", "0", "null"])),
          ]);
          break;
        }
        default:
          delete h[r.pick([...entries.map(([k]) => k), "__metadata__"])];
      }
      return buildSafetensors(h, p.data);
    }
  }
}

async function loadOutcome(bytes: Buffer, label: string): Promise<"ok" | "rejected"> {
  const path = join(scratch, "case.safetensors");
  writeFileSync(path, bytes);
  try {
    await withTimeout(t.native.load(path), 10_000, label);
    return "ok";
  } catch (e) {
    if (e instanceof Error && /timed out/.test(e.message)) throw e;
    // A rejection must be an Error with a message, not a bare value or an empty string.
    expect(e, label).toBeInstanceOf(Error);
    expect((e as Error).message.length, label).toBeGreaterThan(10);
    return "rejected";
  }
}

describe("fuzz: native checkpoint loader", () => {
  it("300 random files and 300 mutated checkpoints resolve or reject, never crash or hang", async () => {
    const r = rng(0x5eed);
    const tally = { ok: 0, rejected: 0 };
    for (let i = 0; i < 300; i++) tally[await loadOutcome(randomFile(r, i), `random file #${i}`)]++;
    expect(tally.ok).toBe(0);
    for (let i = 0; i < 300; i++) tally[await loadOutcome(mutate(r, i), `mutation #${i} (kind ${i % 6})`)]++;
    expect(tally.ok + tally.rejected).toBe(600);
    expect(tally.rejected).toBeGreaterThan(400);

    // Back to the good checkpoint: trains exactly like a clean resume of it.
    await t.native.load(good);
    // Through a copy of the run: the original is locked by its live trainer `t` (one writer per run).
    const copy = join(home, "fuzz-copy");
    mkdirSync(join(copy, "checkpoints"), { recursive: true });
    copyFileSync(join(t.runDir, "run.json"), join(copy, "run.json"));
    copyFileSync(good, join(copy, "checkpoints", "step-10.safetensors"));
    const clean = await Trainer.resume(join(copy, "checkpoints", "step-10.safetensors"));
    const a: number[] = [];
    const b: number[] = [];
    await t.train(3, { onStep: (m) => a.push(m.loss) });
    await clean.train(3, { onStep: (m) => b.push(m.loss) });
    clean.dispose();
    expect(a.every(Number.isFinite)).toBe(true);
    expect(a).toEqual(b);
  });
});

describe("fuzz: Arrow streams of a run", () => {
  it("readRun returns or throws RunStoreError on truncated and mutated streams", async () => {
    const src = await Trainer.create(tinyConfig(home, { name: "arrows", seed: 4 }) as never);
    await src.train(12);
    const dir = src.runDir;
    src.dispose();
    const r = rng(0xa770);
    const tally = { ok: 0, error: 0 };
    for (const file of ["metrics.arrows", "layers.arrows"]) {
      const path = join(dir, file);
      const backup = join(scratch, `${file}.orig`);
      copyFileSync(path, backup);
      const orig = readFileSync(backup);
      for (let i = 0; i < 60; i++) {
        let b: Buffer;
        if (i % 3 === 0) b = orig.subarray(0, r.int(orig.length));
        else if (i % 3 === 1) {
          b = Buffer.from(orig);
          for (let k = 1 + r.int(8); k > 0; k--) b[r.int(b.length)] = r.int(256);
        } else {
          b = Buffer.from(orig);
          const at = r.int(b.length);
          b.fill(r.pick([0, 0xff]), at, at + 1 + r.int(64));
        }
        writeFileSync(path, b);
        try {
          const run = readRun(dir);
          expect(run.metrics.numRows).toBeLessThanOrEqual(12);
          tally.ok++;
        } catch (e) {
          expect(e, `${file} case ${i}`).toBeInstanceOf(RunStoreError);
          tally.error++;
        }
      }
      copyFileSync(backup, path);
    }
    expect(tally.ok + tally.error).toBe(120);
    expect(readRun(dir).metrics.numRows).toBe(12);
  });
});
