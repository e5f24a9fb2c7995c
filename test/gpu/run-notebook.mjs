// Runs a notebook's code cells as one Node module, without Jupyter: `import ... from "primal"`
// points at dist/, and `device: "cpu"` becomes the device asked for (the GPU machine has
// PyTorch but no Jupyter). Cells run in order, in one scope, as the kernel runs them; each
// prints a JSON line {cell, ok, seconds}; the first failing cell ends the run with exit 1.
//   node test/gpu/run-notebook.mjs notebooks/01-quickstart.ipynb cuda
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [nbPath, device = "cuda"] = process.argv.slice(2);
if (!nbPath) {
  console.error("usage: run-notebook.mjs NOTEBOOK.ipynb [device]");
  process.exit(2);
}
const root = join(import.meta.dirname, "..", "..");
const dist = pathToFileURL(join(root, "dist", "src", "index.js")).href;
const nb = JSON.parse(readFileSync(resolve(nbPath), "utf8"));
const cells = nb.cells
  .filter((c) => c.cell_type === "code")
  .map((c) => (Array.isArray(c.source) ? c.source.join("") : c.source));

const imports = [];
const bodies = cells.map((src, i) => {
  const code = src
    .replace(/^import\s+(\{[^}]*\})\s+from\s+["']primal["'];?\s*$/gm, (_, names) => {
      imports.push(names);
      return "";
    })
    .replace(/device:\s*"cpu"/g, `device: ${JSON.stringify(device)}`);
  // Each cell in its own try, timed; a leading ";" keeps a cell that starts with "(" apart.
  return `;{ const t0 = performance.now();
  try {
    __last = await (async () => { ${code.replace(/\n\s*$/, "")}
    })();
    console.log(JSON.stringify({ cell: ${i}, ok: true, seconds: (performance.now() - t0) / 1000 }));
  } catch (e) {
    console.log(JSON.stringify({ cell: ${i}, ok: false, seconds: (performance.now() - t0) / 1000, error: String(e?.stack ?? e).slice(0, 1500) }));
    process.exit(1);
  } }`;
});
// Cells share their top-level names (t, ev, ...): hoist each cell's const/let declarations.
const shared = new Set();
for (const src of cells) for (const m of src.matchAll(/^(?:const|let)\s+([A-Za-z_$][\w$]*)\s*=/gm)) shared.add(m[1]);
const names = [
  ...new Set(
    imports.flatMap((s) =>
      s
        .replace(/[{}]/g, "")
        .split(",")
        .map((x) => x.trim())
        .filter(Boolean),
    ),
  ),
];
const module = [
  `import { ${names.join(", ")} } from ${JSON.stringify(dist)};`,
  `let __last;${shared.size ? ` let ${[...shared].join(", ")};` : ""}`,
  ...bodies.map((b) => b.replace(/^(\s*)(?:const|let)\s+([A-Za-z_$][\w$]*)\s*=/gm, "$1$2 =")),
].join("\n");
const dir = mkdtempSync(join(tmpdir(), "primal-notebook-"));
const file = join(dir, "notebook.mjs");
writeFileSync(file, module);
try {
  await import(pathToFileURL(file).href);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
