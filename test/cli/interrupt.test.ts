// Ctrl-C in `primal train`: during the final evaluation it cancels the native evaluation at
// the next window, and the command still prints its summary (without validation metrics).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDist, repoRoot } from "../reliability/fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-cli-int-"));
beforeAll(() => ensureDist());
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe("primal train and Ctrl-C", () => {
  it("stops the final evaluation on the first Ctrl-C and still prints the summary", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.PRIMAL_WIKITEXT_DIR;
    delete env.PRIMAL_HOME;
    const child = spawn(
      process.execPath,
      [
        join(repoRoot, "bin", "primal.js"),
        "train",
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--steps",
        "2",
        "--sample-every",
        "0",
        "--eval-tokens",
        "0",
        "--home",
        home,
      ],
      { cwd: home, env, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    let sent = false;
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
      // The whole corpus validation split (about 1M tokens): interrupt once it has started.
      if (!sent && /evaluating sotu\/validation: [\d,]+ tokens/.test(stderr)) {
        sent = true;
        child.kill("SIGINT");
      }
    });
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    expect(stderr).toContain("evaluating on the whole of each split");
    expect(sent).toBe(true);
    expect(stderr).toContain("evaluation interrupted: no validation metrics");
    expect(stderr).not.toMatch(/evaluated sotu\/validation/);
    expect(code).toBe(0);
    expect(stdout).toMatch(/steps {8}2 \(now at step 2\)/);
    expect(stdout).toContain("loss n/a");
  }, 120_000);
});
