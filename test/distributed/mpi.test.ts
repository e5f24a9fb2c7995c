// The data-parallel contract (docs/distributed.md): two MPI ranks with batch B reproduce one rank
// with two micro-batches of B (accum 2) exactly — losses, flips, codes, votes, Ghost Scales —
// including votes at the clamp; a rank that dies ends the run with an error instead of a hang;
// ranks that disagree on the run refuse to start. Each rank is a node process running
// rank-run.mjs on the tiny model (CPU, one thread).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { native } from "../../src/native.js";

const script = join(import.meta.dirname, "rank-run.mjs");
const mpirunFound = spawnSync("mpirun", ["--version"], { encoding: "utf8" }).status === 0;
const mpiBuilt = (() => {
  try {
    return (native() as unknown as { communicators?: string }).communicators?.split(",").includes("mpi") ?? false;
  } catch {
    return false;
  }
})();
const skipReason = !mpirunFound
  ? "mpirun not found (apt-get install openmpi-bin libopenmpi-dev, then rebuild)"
  : !mpiBuilt
    ? "the native addon was built without MPI (install libopenmpi-dev and rebuild)"
    : "";
if (skipReason) console.warn(`distributed tests skipped: ${skipReason}`);

const dir = mkdtempSync(join(tmpdir(), "primal-mpi-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A hung collective would outlive this; the assertions check the run ended by itself first.
const KILL_AFTER_MS = 120_000;

function mpirun(ranks: number, args: string[]) {
  return spawnSync(
    "mpirun",
    ["-n", String(ranks), "--oversubscribe", "--allow-run-as-root", process.execPath, script, ...args],
    // Containers often forbid the cross-process memory copy Open MPI's shared-memory transport
    // tries first; plain copies work everywhere.
    {
      encoding: "utf8",
      timeout: KILL_AFTER_MS,
      env: { ...process.env, OMPI_MCA_btl_vader_single_copy_mechanism: "none" },
    },
  );
}

function single(args: string[]) {
  return spawnSync(process.execPath, [script, ...args], { encoding: "utf8", timeout: KILL_AFTER_MS });
}

interface RunOut {
  worldSize: number;
  distributed: string | null;
  losses: number[];
  flips: number[];
  scales: number[];
  layers: { codes: string; votes: string }[];
  votes: number[];
  step: number;
  tokens: number;
}

const read = (f: string) => JSON.parse(readFileSync(f, "utf8")) as RunOut;

describe.skipIf(!!skipReason)("data parallel over MPI", () => {
  for (const edge of [false, true]) {
    it(`2 ranks x batch 2 equal 1 rank x batch 2 x accum 2${edge ? ", votes starting at +-126 (the clamp)" : ""}`, () => {
      const tag = edge ? "edge" : "plain";
      const one = single([join(dir, `one-${tag}.json`), "5", "2", edge ? "edge" : ""]);
      expect(one.status, one.stderr).toBe(0);
      const two = mpirun(2, [join(dir, `two-${tag}.json`), "5", "1", edge ? "mpi,edge" : "mpi"]);
      expect(two.error, "mpirun was killed by the test's timeout").toBeUndefined();
      expect(two.status, two.stdout + two.stderr).toBe(0);
      const a = read(join(dir, `one-${tag}.json`));
      const b = read(join(dir, `two-${tag}.json`));
      expect([a.worldSize, b.worldSize, b.distributed]).toEqual([1, 2, "mpi"]);
      expect(b.losses).toEqual(a.losses);
      expect(b.flips).toEqual(a.flips);
      expect(b.scales).toEqual(a.scales);
      expect(b.layers).toEqual(a.layers);
      expect(b.tokens).toBe(a.tokens);
      // Not a vacuous match: the run moved codes, and (edge) some votes sit at the clamp.
      expect(a.flips.every((f) => f > 0)).toBe(true);
      if (edge) expect(a.votes.some((v) => Math.abs(v) > 100)).toBe(true);
    });
  }

  it("a distributed resume (rank 0 reads the checkpoint, the others receive it) continues the run exactly", () => {
    const straight = mpirun(2, [join(dir, "straight.json"), "4", "1", "mpi"]);
    expect(straight.status, straight.stdout + straight.stderr).toBe(0);
    const ckpt = join(dir, "half.safetensors");
    const first = mpirun(2, [join(dir, "first.json"), "2", "1", `mpi,save=${ckpt}`]);
    expect(first.status, first.stdout + first.stderr).toBe(0);
    const rest = mpirun(2, [join(dir, "rest.json"), "2", "1", `mpi,load=${ckpt}`]);
    expect(rest.status, rest.stdout + rest.stderr).toBe(0);
    const a = read(join(dir, "straight.json"));
    const b = read(join(dir, "first.json"));
    const c = read(join(dir, "rest.json"));
    expect([...b.losses, ...c.losses]).toEqual(a.losses);
    expect(c.layers).toEqual(a.layers);
    expect(c.scales).toEqual(a.scales);
    expect([c.step, c.tokens]).toEqual([4, a.tokens]);
  });

  it("a rank that dies ends the run with an error naming it, not a hang", () => {
    const r = mpirun(2, [join(dir, "die.json"), "100000", "1", "mpi,die=3"]);
    expect(r.error, "mpirun hung until the test's timeout killed it").toBeUndefined();
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/rank 1\b[^\n]*(signal 9|Killed)/);
  });

  it("ranks that drift apart are all stopped at the next step, with the reason", () => {
    const r = mpirun(2, [join(dir, "drift.json"), "6", "1", "mpi,drift=2"]);
    expect(r.error).toBeUndefined();
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/the ranks no longer hold the same model before step 4/);
  });

  it("ranks that disagree on the run refuse to start, each saying why", () => {
    const r = mpirun(2, [join(dir, "seed.json"), "3", "1", "mpi,seedByRank"]);
    expect(r.error).toBeUndefined();
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/mpi rank 1 of 2: the ranks do not train the same run .*seed \(rank 0: 7, rank 1: 8\)/);
  });
});

describe.skipIf(!!skipReason)("the CLI over MPI", () => {
  const bin = join(import.meta.dirname, "..", "..", "bin", "primal.js");
  let cliRun = "";

  it(
    "mpirun -n 2 primal train --distributed mpi: rank 0 alone writes one run that records 2 ranks",
    { timeout: 600_000 },
    () => {
      const home = join(dir, "cli-home");
      const r = spawnSync(
        "mpirun",
        [
          "-n",
          "2",
          "--oversubscribe",
          "--allow-run-as-root",
          process.execPath,
          bin,
          "train",
          "--preset",
          "tiny",
          "--steps",
          "2",
          "--device",
          "cpu",
          "--threads",
          "1",
          "--distributed",
          "mpi",
          "--eval-tokens",
          "2000",
          "--json",
          "--home",
          home,
        ],
        { encoding: "utf8", timeout: 540_000 },
      );
      expect(r.error).toBeUndefined();
      expect(r.status, r.stderr).toBe(0);
      const lines = r.stdout
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("{"));
      expect(lines).toHaveLength(1); // rank 1 prints nothing
      const out = JSON.parse(lines[0]!) as { worldSize: number; distributed: string; runDir: string; step: number };
      expect([out.worldSize, out.distributed, out.step]).toEqual([2, "mpi", 2]);
      expect(readdirSync(home)).toHaveLength(1);
      const run = JSON.parse(readFileSync(join(out.runDir, "run.json"), "utf8")) as { config: Record<string, unknown> };
      expect([run.config.worldSize, run.config.distributed]).toEqual([2, "mpi"]);
      expect(existsSync(join(out.runDir, "checkpoints", "step-2.safetensors"))).toBe(true);
      cliRun = out.runDir;
    },
  );

  it("that run, resumed by one process, is refused unless --change-world-size says the step shrinks", () => {
    expect(cliRun, "the 2-rank run of the previous test").not.toBe("");
    const resume = (extra: string[]) =>
      spawnSync(
        process.execPath,
        [bin, "resume", cliRun, "--steps", "1", "--device", "cpu", "--threads", "1", "--json", ...extra],
        { encoding: "utf8", timeout: 300_000 },
      );
    const refused = resume([]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      /trained on 2 ranks x \d+ = \d+ windows per step; this resume has 1 rank x \d+ = \d+ windows per step.*--change-world-size/,
    );
    const ok = resume(["--change-world-size"]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout.trim().split("\n").at(-1)!)).toMatchObject({ worldSize: 1, step: 3 });
  });

  it("primal plan --ranks reports the bytes each rank all-reduces per step", () => {
    const r = spawnSync(
      process.execPath,
      [bin, "plan", "--preset", "tiny", "--device", "cpu", "--ranks", "200", "--json"],
      {
        encoding: "utf8",
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const wire = (JSON.parse(r.stdout) as { wire: Record<string, unknown> }).wire;
    // tiny: 16,704 fp parameters (float32) and 106,496 ternary weights (int32 votes: 200 ranks > 127).
    expect(wire).toEqual({
      worldSize: 200,
      grads: 16704 * 4,
      scalars: (5 + 14) * 8,
      votes: 106496 * 4,
      voteType: "int32",
      total: 16704 * 4 + 19 * 8 + 106496 * 4,
    });
  });
});

describe("without MPI", () => {
  it.skipIf(mpiBuilt)(
    `a build without MPI says how to get it${mpiBuilt ? " [skipped: this addon was built with MPI]" : ""}`,
    () => {
      const { NativeTrainer } = native();
      expect(
        () =>
          new NativeTrainer({
            model: { vocab: 256, dModel: 64, layers: 2, heads: 4, ffn: 192, seq: 32 },
            quant: "poltergeist",
            actBits: 8,
            batch: 2,
            accum: 1,
            seed: 1,
            warmup: 1,
            totalSteps: 2,
            knobs: {},
            device: "cpu",
            threads: 1,
            distributed: "mpi",
          } as never),
      ).toThrow(/no MPI.*libopenmpi-dev/);
    },
  );

  it("NCCL on the CPU backend or without NCCL is refused with the reason", () => {
    const { NativeTrainer } = native();
    expect(
      () =>
        new NativeTrainer({
          model: { vocab: 256, dModel: 64, layers: 2, heads: 4, ffn: 192, seq: 32 },
          quant: "poltergeist",
          actBits: 8,
          batch: 2,
          accum: 1,
          seed: 1,
          warmup: 1,
          totalSteps: 2,
          knobs: {},
          device: "cpu",
          threads: 1,
          distributed: "nccl",
        } as never),
    ).toThrow(/no NCCL|works on CUDA device memory/);
  });
});
