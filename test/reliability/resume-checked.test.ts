// Every byte that steers a resume is checked: a one-character edit of the seed, step, token count
// or a knob in a checkpoint's metadata is refused naming the field, a bit flip in a run.json key
// falls back to the checked copy of the config the checkpoint carries (recorded as a warning), and
// a checkpoint written before metadata checksums existed still loads, with a warning event.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { buildSafetensors, parseSafetensors } from "./fixtures/safetensors.js";
import { copyRunDir, tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-checked-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

/** What the run was created with where it differs from the defaults, so a fallback to a default shows. */
const CREATED = { steps: 40, seed: 7, knobs: { lr: 2e-3, flipRate: 0.02 } };
let base = "";
let baseConfig: Trainer["config"] | undefined;
let baseKnobs: Record<string, number | null> = {};

beforeAll(async () => {
  const t = await Trainer.create(tinyConfig(home, { name: "base", checkpointEvery: 0, ...CREATED }) as never);
  await t.train(2); // one checkpoint, at step 2
  baseConfig = t.config;
  baseKnobs = { ...t.knobs() };
  t.dispose();
  base = t.runDir;
});

const copyRun = (): string => copyRunDir(base, home);

/** Why a resume failed, or that it did not fail (a resumed trainer is disposed, freeing the run). */
async function resumeError(target: string): Promise<string> {
  try {
    (await Trainer.resume(target)).dispose();
    return "resumed without an error";
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

const checkpointOf = (dir: string) => join(dir, "checkpoints", "step-2.safetensors");

/**
 * Changes one character of a checkpoint's header in place: the first significant digit of the
 * number that follows `key` (a metadata field, or a knob inside the escaped knobs JSON). The file
 * keeps its length, its header length and its tensor data.
 */
function editDigitAfter(path: string, key: string): void {
  const bytes = readFileSync(path);
  const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(8, headerEnd).toString("latin1");
  const at = header.indexOf(key);
  expect(at, `${key} in the header`).toBeGreaterThan(0);
  const m = /[1-9]/.exec(header.slice(at + key.length));
  const pos = 8 + at + key.length + m!.index;
  bytes[pos] = bytes[pos] === 0x39 ? 0x31 : bytes[pos]! + 1;
  writeFileSync(path, bytes);
}

describe("a one-character edit of the checkpoint metadata", () => {
  const cases: [string, string][] = [
    ["seed", '"seed":"'],
    ["step", '"step":"'],
    ["tokens", '"tokens":"'],
    ["a knob (lr)", '\\"lr\\":'],
    ["a knob (flipRate)", '\\"flipRate\\":'],
  ];
  for (const [what, key] of cases) {
    it(`of ${what} is refused naming the field, from the run folder and from the file`, async () => {
      const dir = copyRun();
      const path = checkpointOf(dir);
      editDigitAfter(path, key);
      const field = what.startsWith("a knob") ? "knobs" : what;
      const named = new RegExp(
        `checkpoint '.*step-2\\.safetensors' is damaged: its metadata '${field}' does not match`,
      );
      expect(await resumeError(dir)).toMatch(named);
      expect(await resumeError(path)).toMatch(named);
      // The refused resume wrote nothing: the edited file is where it was.
      expect(readFileSync(path).length).toBeGreaterThan(0);
    });
  }
});

describe("the metadata checksum itself", () => {
  it("a bit flip that renames it is refused, not taken for a checkpoint that predates it", async () => {
    const dir = copyRun();
    const path = checkpointOf(dir);
    const bytes = readFileSync(path);
    const at = bytes.indexOf('"metaCrc32":');
    expect(at).toBeGreaterThan(0);
    bytes[at + 5]! ^= 0x01; // metaCrc32 -> metaBrc32
    writeFileSync(path, bytes);
    expect(await resumeError(dir)).toMatch(/is damaged: its metadata 'metaBrc32' is unknown/);
  });
});

describe("run.json", () => {
  /** Flips one bit of the first occurrence of `"key":` inside run.json's config. */
  function flipKeyBit(dir: string, key: string): void {
    const path = join(dir, "run.json");
    const bytes = readFileSync(path);
    const text = bytes.toString("latin1");
    const at = text.indexOf(`"${key}":`, text.indexOf('"config"'));
    expect(at).toBeGreaterThan(0);
    bytes[at + 2]! ^= 0x01; // "steps" -> "srteps"-like: the key no longer exists
    writeFileSync(path, bytes);
  }

  it("a bit flip in a config key falls back to the checkpoint's checked copy, recorded as a warning", async () => {
    const dir = copyRun();
    flipKeyBit(dir, "steps");
    const r = await Trainer.resume(dir);
    try {
      expect(r.config.steps).toBe(CREATED.steps);
      expect(r.config).toEqual(baseConfig);
      expect(r.knobs()).toEqual(baseKnobs);
    } finally {
      r.dispose();
    }
    const events = readFileSync(join(dir, "events.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; message?: string });
    const warning = events.find((e) => e.kind === "warning");
    expect(warning?.message).toMatch(/run\.json .*steps/);
  });

  it("a flip in the seed or the model falls back too (the model is not rebuilt from a damaged file)", async () => {
    for (const key of ["seed", "layers"]) {
      const dir = copyRun();
      flipKeyBit(dir, key);
      const r = await Trainer.resume(dir);
      try {
        expect(r.config).toEqual(baseConfig);
      } finally {
        r.dispose();
      }
    }
  });
});

describe("checkpoints written before metadata checksums", () => {
  /**
   * A copy of the base run whose checkpoint is what an older build wrote: no metadata checksum, the
   * bridge beside a separate bridgeOn flag (`knobs` merged into the stored knobs), and optionally
   * another primal.extra.
   */
  function asOldCheckpoint(knobs: Record<string, unknown>, extra?: Record<string, unknown>): string {
    const dir = copyRun();
    const path = checkpointOf(dir);
    const p = parseSafetensors(readFileSync(path));
    const meta = p.header.__metadata__!;
    delete meta.metaCrc32;
    meta.knobs = JSON.stringify({ ...(JSON.parse(meta.knobs!) as Record<string, unknown>), ...knobs });
    if (extra) meta["primal.extra"] = JSON.stringify(extra);
    writeFileSync(path, buildSafetensors(p.header, p.data));
    return dir;
  }

  it("still load; the resume records a warning that their metadata was not checked", async () => {
    // The facade's own copy of the knobs, which older versions kept in primal.extra.
    const dir = asOldCheckpoint({ bridge: 2 / 3, bridgeOn: true }, { runId: "old", step: 2, knobs: { lr: 0.5 } });
    const r = await Trainer.resume(dir);
    try {
      expect(r.step).toBe(2);
      // The core's knobs are the ones in force; the facade's old copy in primal.extra is not read.
      expect(r.knobs()).toEqual(baseKnobs);
      expect(r.native.getKnobs()).toEqual(baseKnobs);
    } finally {
      r.dispose();
    }
    const events = readFileSync(join(dir, "events.jsonl"), "utf8");
    expect(events).toMatch(/"kind":"warning".*predates metadata checksums/);
  });

  it("an old checkpoint with the bridge off loads with the bridge off", async () => {
    const r = await Trainer.resume(asOldCheckpoint({ bridge: 0.8, bridgeOn: false }));
    try {
      expect(r.knobs().bridge).toBeNull();
    } finally {
      r.dispose();
    }
  });
});
