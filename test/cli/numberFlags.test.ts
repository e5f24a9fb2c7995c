// Every numeric flag goes through one strict parser: "0x10", "" and "1e1" are refused for integer
// flags (they would be read as 16, 0 and 10), with the flag and the value in the message.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureDist, repoRoot } from "../reliability/fixtures/common.js";

const bin = join(repoRoot, "bin", "primal.js");
beforeAll(() => ensureDist());

function primal(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("strict integer flags", () => {
  for (const bad of ["0x10", "", "1e1"]) {
    it(`export --step ${JSON.stringify(bad)} is refused`, () => {
      const r = primal(["export", join(repoRoot, "no-such-run"), "--format", "gguf", "--step", bad]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/--step must be an integer/);
      expect(r.stderr).toContain(`'${bad}'`);
    });
    it(`plan --ranks ${JSON.stringify(bad)} is refused`, () => {
      const r = primal(["plan", "--preset", "tiny", "--device", "cpu", "--ranks", bad]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/--ranks must be an integer/);
      expect(r.stderr).toContain(`'${bad}'`);
    });
  }

  it("the shared parser refuses every other spelling of a number too", async () => {
    const { intFlag, numFlag } = await import("../../src/cli/numberFlags.js");
    for (const bad of ["0x10", "", "1e1", " 2", "2.0", "0b1", "Infinity", "9007199254740993"])
      expect(() => intFlag("n", bad), bad).toThrow(`--n must be an integer, got '${bad}'`);
    expect(() => intFlag("step", "-1", { min: 0 })).toThrow("--step must be a non-negative integer, got '-1'");
    expect(intFlag("n", "007")).toBe(7);
    for (const bad of ["", "0x10", "1e", ".", "NaN", " 1"])
      expect(() => numFlag("lr", bad), bad).toThrow(/--lr must be a number/);
    expect(numFlag("lr", "3e-4")).toBe(3e-4);
  });

  it("plain integers still work", () => {
    const r = primal(["plan", "--preset", "tiny", "--device", "cpu", "--ranks", "2", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { wire: { worldSize: number } }).wire.worldSize).toBe(2);
  });
});
