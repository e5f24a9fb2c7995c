// The docs agree with the notebooks: every notebook the docs name exists, docs/notebooks.md
// lists every notebook (and counts them right), and no notebook reads or writes a path that
// depends on the directory the notebook happens to run in. No Jupyter needed.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { packageRoot } from "../../src/paths.js";

const ROOT = packageRoot();
const NOTEBOOKS = readdirSync(join(ROOT, "notebooks"))
  .filter((f) => f.endsWith(".ipynb"))
  .map((f) => f.replace(/\.ipynb$/, ""))
  .sort();
const DOCS = [
  "README.md",
  "kernel/README.md",
  "results/README.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];
const WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];

interface Cell {
  cell_type: string;
  source: string | string[];
}

function codeOf(name: string): string[] {
  const nb = JSON.parse(readFileSync(join(ROOT, "notebooks", `${name}.ipynb`), "utf8")) as { cells: Cell[] };
  return nb.cells
    .filter((c) => c.cell_type === "code")
    .map((c) => (Array.isArray(c.source) ? c.source.join("") : c.source));
}

describe("docs and notebooks agree", () => {
  it("every notebook named in the docs exists", () => {
    const missing: string[] = [];
    for (const doc of DOCS) {
      const text = readFileSync(join(ROOT, doc), "utf8");
      for (const m of text.matchAll(/\b(0\d-[a-z][a-z0-9-]*[a-z0-9])(?:\.ipynb)?\b/g)) {
        if (!NOTEBOOKS.includes(m[1] as string)) missing.push(`${doc}: ${m[1]}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("docs/notebooks.md lists every notebook and counts them right", () => {
    const text = readFileSync(join(ROOT, "docs", "notebooks.md"), "utf8");
    for (const n of NOTEBOOKS) expect(text, n).toContain(`| \`${n}\` |`);
    // "holds six worked notebooks", "all six run in …": any count in words must be the real one.
    const counts = [...text.matchAll(/\b(zero|one|two|three|four|five|six|seven|eight|nine|ten) (?:worked )?notebooks\b|\ball (two|three|four|five|six|seven|eight|nine|ten)\b/g)];
    expect(counts.length).toBeGreaterThan(0);
    for (const c of counts) expect(WORDS.indexOf((c[1] ?? c[2]) as string), c[0]).toBe(NOTEBOOKS.length);
  });

  it("no notebook path depends on the working directory", () => {
    const found: string[] = [];
    for (const n of NOTEBOOKS) {
      for (const code of codeOf(n)) {
        // Relative path literals ("../results", "./figures") and the working directory itself.
        for (const m of code.matchAll(/(["'`])(\.\.?\/[^"'`]*)\1/g)) found.push(`${n}: ${m[2]}`);
        if (/process\.cwd\(\)/.test(code)) found.push(`${n}: process.cwd()`);
      }
    }
    expect(found).toEqual([]);
  });

  it("every notebook imports in a cell of its own, first", () => {
    for (const n of NOTEBOOKS) {
      const first = codeOf(n)[0] as string;
      const lines = first.split("\n").filter((l) => l.trim() !== "" && !l.trim().startsWith("//"));
      expect(
        lines.every((l) => /^import\s/.test(l)),
        `${n}: the first code cell should hold only imports`,
      ).toBe(true);
    }
  });
});
