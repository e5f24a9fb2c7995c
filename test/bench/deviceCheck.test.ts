// The GPU device check's staging, run without a GPU: every stage is merged into result.json as
// it ends (ok, failed, timed out, or skipped for the deadline), and with no GPU the whole script
// exits 0 with a valid result.json whose GPU stages say "skipped: no GPU".
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const gpuDir = join(root, "test", "bench", "gpu");
const hasTools = ["bash", "python3", "timeout", "tar"].every(
  (t) => spawnSync("bash", ["-c", `command -v ${t}`]).status === 0,
);
const why = "needs bash, python3, timeout and tar on PATH";

const scratch = mkdtempSync(join(tmpdir(), "primal-device-check-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Stage {
  status: string;
  rows?: Record<string, unknown>[];
  data?: Record<string, unknown>;
  tests?: Record<string, { passed: number; failed: number; skipped: number }>;
}
interface Result {
  gpu: boolean;
  order: string[];
  stages: Record<string, Stage>;
}

describe("device check staging", () => {
  it.skipIf(!hasTools)(`without a GPU: exits 0, env ran, GPU stages skipped (${why})`, () => {
    const out = join(scratch, "nogpu");
    const r = spawnSync("bash", [join(gpuDir, "device-check.sh")], {
      env: { ...process.env, NO_GPU: "1", OUT: out, WORK_DIR: join(out, "work"), DEADLINE_S: "120" },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(join(out, "result.json"), "utf8")) as Result;
    expect(res.gpu).toBe(false);
    expect(res.order).toEqual([
      "env",
      "build",
      "gates",
      "throughput",
      "profile",
      "probes",
      "peers",
      "stack",
      "dist",
      "seed",
    ]);
    expect(res.stages.env!.status).toBe("ok");
    expect(res.stages.env!.data).toHaveProperty("nproc");
    for (const s of res.order.slice(1, -1)) expect(res.stages[s]!.status).toBe("skipped: no GPU");
    // The seed experiment runs only when STAGES names it.
    expect(res.stages.seed!.status).toBe("skipped: not selected");
    expect(existsSync(join(out, "summary.txt"))).toBe(true);
    expect(existsSync(join(out, "logs.tar.gz"))).toBe(true);
    expect(r.stdout).toContain("stack: skipped: no GPU");
  });

  it.skipIf(!hasTools)(`a stage that fails, times out or misses the deadline still leaves its data (${why})`, () => {
    const out = join(scratch, "runner");
    const script = join(scratch, "runner.sh");
    // Test stages run through the real runner (stages.sh): rows written before a timeout are kept.
    writeFileSync(
      script,
      `set -u
export RESULT="${out}/result.json" WORK="${out}/work" MERGE_PY="${gpuDir}/merge_result.py"
export HAVE_GPU=1 STAGES=fine,broken,slow,late,tests RESERVE_S=0 MIN_STAGE_S=2
mkdir -p "$WORK"
source "${gpuDir}/stages.sh"
python3 "$MERGE_PY" "$RESULT" --init gpu=true
stage_fine() { echo '{"x":1}' > "$STAGE_DIR/r.jsonl"; add_merge --jsonl "$STAGE_DIR/r.jsonl"; }
stage_broken() { echo '{"x":2}' > "$STAGE_DIR/r.jsonl"; echo 'not json' >> "$STAGE_DIR/r.jsonl"; add_merge --jsonl "$STAGE_DIR/r.jsonl"; exit 3; }
stage_slow() { add_merge --jsonl "$STAGE_DIR/r.jsonl"; echo '{"x":3}' > "$STAGE_DIR/r.jsonl"; sleep 30; echo '{"x":4}' >> "$STAGE_DIR/r.jsonl"; }
stage_tests() { printf 'ok   cuda/a\\nFAIL cuda/b\\n  x.cpp:1: expected y\\nskip cuda/c\\n  no GPU\\n' > "$STAGE_DIR/t.log"; add_merge --tests "$STAGE_DIR/t.log"; }
stage_unselected() { exit 1; }
export END=$(( $(date +%s) + 60 ))
run_stage fine 10 gpu
run_stage broken 10 gpu
run_stage slow 2 gpu
run_stage tests 10 gpu
run_stage unselected 10 gpu
run_stage cpuonly 10 none
export END=$(date +%s)
run_stage late 10 gpu
`,
    );
    const r = spawnSync("bash", [script], { encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(join(out, "result.json"), "utf8")) as Result;
    expect(res.stages.fine!.status).toBe("ok");
    expect(res.stages.fine!.rows).toEqual([{ x: 1 }]);
    expect(res.stages.broken!.status).toBe("failed (exit 3)");
    expect(res.stages.broken!.rows).toEqual([{ x: 2 }]);
    expect(res.stages.slow!.status).toBe("timeout");
    expect(res.stages.slow!.rows).toEqual([{ x: 3 }]);
    expect(res.stages.tests!.tests!["t.log"]).toMatchObject({ passed: 1, failed: 1, skipped: 1 });
    expect(res.stages.unselected!.status).toBe("skipped: not selected");
    expect(res.stages.cpuonly!.status).toBe("skipped: not selected");
    expect(res.stages.late!.status).toBe("skipped: deadline");
    expect(res.order).toEqual(["fine", "broken", "slow", "tests", "unselected", "cpuonly", "late"]);
  });
});
