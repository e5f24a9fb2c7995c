// Runs the native core's own test executable (op gradient checks, Poltergeist rules,
// determinism, resume, memory plans, CUDA parity) that cmake-js builds next to the addon. Every
// C++ case becomes one vitest case, so a case the executable skips (e.g. "no GPU") shows as skipped
// with its reason instead of passing.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const candidates = [
  join(root, "build", "Release", "primal_core_test"),
  join(root, "build", "native", "primal_core_test"),
  join(root, "build", "native", "Release", "primal_core_test"),
];
const exe = candidates.find((p) => existsSync(p));
const TIMEOUT = 600_000;

/** Groups that every build has; the CUDA group exists only in CUDA builds. */
const REQUIRED_GROUPS = ["cpu/", "trainer/", "philox/", "poltergeist/", "memory/"];
const CUDA_GROUP = "cuda/";

interface CaseResult {
  status: "ok" | "FAIL" | "skip";
  /** The line the executable prints under a failed or skipped case (the failure, the reason). */
  detail: string;
}

interface GroupRun {
  results: Map<string, CaseResult>;
  output: string;
  exitCode: number | null;
}

function caseNames(): string[] {
  if (!exe) return [];
  const r = spawnSync(exe, ["--list"], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) return [];
  return r.stdout.split("\n").filter((l) => l.length > 0);
}

/** "cpu/poltFlip ..." -> "cpu/". */
const groupOf = (name: string) => name.slice(0, name.indexOf("/") + 1);

/**
 * Cases that run in a process of their own, apart from the rest of their group: a device fault
 * there (the tensor-core attention kernels) would otherwise fail every later case of the group.
 */
const ISOLATED = ["cuda/attention tc"];

const runs = new Map<string, GroupRun>();

/** The run that holds a case: its isolated prefix's, else its group's (minus isolated cases). */
function runFor(name: string): GroupRun {
  const iso = ISOLATED.find((p) => name.startsWith(p));
  if (iso) return runOnce(iso, [iso]);
  const group = groupOf(name);
  const excludes = ISOLATED.filter((p) => p.startsWith(group)).flatMap((p) => ["--exclude", p]);
  return runOnce(group, [...excludes, group]);
}

/** Runs the executable once per key (its filter matches a substring) and parses its case lines. */
function runOnce(key: string, args: string[]): GroupRun {
  const cached = runs.get(key);
  if (cached) return cached;
  const r = spawnSync(exe!, args, { encoding: "utf8", timeout: TIMEOUT });
  const output = (r.stdout ?? "") + (r.stderr ?? "");
  const lines = output.split("\n");
  const results = new Map<string, CaseResult>();
  lines.forEach((line, i) => {
    const m = /^(ok {2}|FAIL|skip) (.+)$/.exec(line);
    if (!m) return;
    const status = m[1]!.trim() as CaseResult["status"];
    results.set(m[2]!, { status, detail: status === "ok" ? "" : (lines[i + 1] ?? "").trim() });
  });
  const run = { results, output, exitCode: r.status };
  runs.set(key, run);
  return run;
}

const names = caseNames();
const groups = [...new Set(names.map(groupOf))];

describe("native core test executable", () => {
  it("is built by npm install and lists its cases", () => {
    expect(exe, `looked for ${candidates.join(", ")}`).toBeDefined();
    for (const g of REQUIRED_GROUPS) expect(groups, `no ${g} cases registered`).toContain(g);
  });

  for (const group of groups) {
    describe(group, () => {
      for (const name of names.filter((n) => groupOf(n) === group)) {
        it(
          name,
          (ctx) => {
            const run = runFor(name);
            const res = run.results.get(name);
            expect(res, `no result for this case (exit code ${run.exitCode}):\n${run.output}`).toBeDefined();
            if (res!.status === "skip") ctx.skip(res!.detail || "skipped by the executable");
            expect(res!.status, `${res!.detail}\n\n${run.output}`).toBe("ok");
          },
          TIMEOUT,
        );
      }
    });
  }

  if (!groups.includes(CUDA_GROUP)) {
    it(`${CUDA_GROUP} cases`, (ctx) => {
      ctx.skip("no GPU (this build has no CUDA backend)");
    });
  }
});
