// Runs the native core's own test executable (op gradient checks, Poltergeist rules,
// determinism, resume) that cmake-js builds next to the addon.
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

describe("native core test executable", () => {
  const exe = candidates.find((p) => existsSync(p));

  it("is built by npm install", () => {
    expect(exe, `looked for ${candidates.join(", ")}`).toBeDefined();
  });

  for (const group of ["cpu/", "trainer/", "philox/", "cuda/"]) {
    it(`passes the ${group} cases`, () => {
      const r = spawnSync(exe!, [group], { encoding: "utf8", timeout: 600_000 });
      const out = (r.stdout ?? "") + (r.stderr ?? "");
      const m = /(\d+) passed, (\d+) failed/.exec(out);
      expect(m, out).not.toBeNull();
      expect(Number(m![2]), out).toBe(0);
      expect(r.status, out).toBe(0);
      if (group !== "cuda/") expect(Number(m![1])).toBeGreaterThan(0);
    });
  }
});
