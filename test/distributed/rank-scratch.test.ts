// Scratch folders of data-parallel ranks (<tmp>/primal-rank*) never outlive their process for long:
// a normal exit removes them, and a rank that was killed (nothing runs at a SIGKILL) has its folder
// swept by the next trainer that starts. Folders of live processes are left alone.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { ensureDist, repoRoot, tinyConfig } from "../reliability/fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-scratch-"));
const made: string[] = [];
beforeAll(() => ensureDist());
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
}

/** A scratch folder as an earlier version named it (no pid in the name), holding a run locked by `pid`. */
function oldStyleScratch(pid: number): string {
  const dir = mkdtempSync(join(tmpdir(), "primal-rank1-"));
  made.push(dir);
  const run = join(dir, "2031-01-01T00-00-00-poltergeist-tiny-abcd");
  mkdirSync(run);
  writeFileSync(join(run, "lock"), JSON.stringify({ pid, host: hostname(), since: "2031-01-01T00:00:00.000Z" }));
  return dir;
}

async function startAndStop(): Promise<void> {
  const t = await Trainer.create(tinyConfig(home, { checkpointEvery: 0 }) as never);
  t.dispose();
}

describe("rank scratch folders", () => {
  it("the folder of a killed rank is swept at the next start; a live one is kept", async () => {
    const leaked = oldStyleScratch(deadPid());
    const live = oldStyleScratch(process.pid);
    await startAndStop();
    expect(existsSync(leaked)).toBe(false);
    expect(existsSync(live)).toBe(true);
  });

  it("a rank process removes its folder on exit, and a SIGKILLed one is swept", async () => {
    const mod = pathToFileURL(join(repoRoot, "dist", "src", "rankScratch.js")).href;
    const script = (then: string) =>
      `const { makeRankScratch } = await import(${JSON.stringify(mod)}); ` +
      `process.stdout.write(makeRankScratch(1) + "\\n"); ${then}`;
    const normal = spawnSync(process.execPath, ["--input-type=module", "-e", script("")], { encoding: "utf8" });
    expect(normal.status, normal.stderr).toBe(0);
    const cleanDir = normal.stdout.trim();
    expect(cleanDir).toMatch(/primal-rank1-/);
    expect(existsSync(cleanDir)).toBe(false);

    const killed = spawnSync(
      process.execPath,
      ["--input-type=module", "-e", script('process.kill(process.pid, "SIGKILL");')],
      { encoding: "utf8" },
    );
    expect(killed.signal).toBe("SIGKILL");
    const leaked = killed.stdout.trim();
    made.push(leaked);
    expect(existsSync(leaked)).toBe(true);
    await startAndStop();
    expect(existsSync(leaked)).toBe(false);
  });
});
