// Finds a Python that has the Jupyter client modules the kernel tests need (not a test file).
import { execFileSync, spawnSync } from "node:child_process";

/** $PRIMAL_PYTHON, the interpreter `jupyter` runs on, then python3: the first that imports `modules`. */
export function findPython(modules: string[]): string | null {
  const candidates = [process.env.PRIMAL_PYTHON];
  const jupyter = spawnSync("sh", ["-c", "command -v jupyter"], { encoding: "utf8" }).stdout?.trim();
  if (jupyter) {
    try {
      const first = execFileSync("head", ["-n1", jupyter], { encoding: "utf8" });
      if (first.startsWith("#!")) candidates.push(first.slice(2).trim().split(/\s+/)[0]);
    } catch {
      // not a script
    }
  }
  candidates.push("python3", "/usr/bin/python3");
  const probe = `import ${modules.join(", ")}`;
  for (const c of candidates) {
    if (c && spawnSync(c, ["-c", probe], { stdio: "ignore" }).status === 0) return c;
  }
  return null;
}
