// Figure export speed: the process's shared headless browser (exportFigure since it reuses one
// browser) against a fresh browser per export (what exportFigure did before), measured in the
// same run on the same figure. Prints the first and the following exports of each format, and
// the ratio. Needs dist/ (npm run build:ts) and Chromium.
//   node test/bench/export/run.mjs [--repeat 3]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tableFromArrays } from "apache-arrow";
import { plots } from "../../../dist/src/index.js";

const i = process.argv.indexOf("--repeat");
const repeat = i > 0 ? Number(process.argv[i + 1]) : 3;
const dir = mkdtempSync(join(tmpdir(), "primal-export-bench-"));

// A loss figure of 2,000 steps with validation points and two knob changes: a typical figure.
const n = 2000;
const step = Int32Array.from({ length: n }, (_, k) => k + 1);
const run = {
  id: "bench",
  name: "bench",
  metrics: tableFromArrays({
    step,
    loss: Float32Array.from(step, (s) => 5.5 - Math.log(s) * 0.5 + 0.05 * Math.sin(s)),
  }),
  layers: tableFromArrays({ step: Int32Array.from([]) }),
  events: [
    { step: 600, kind: "set", knob: "bridge", old: 2 / 3, new: 0.8 },
    { step: 1400, kind: "set", knob: "flipRate", old: 0.01, new: 0.02 },
  ],
};
const fig = plots.loss(run, { smooth: true });

const time = async (fn) => {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
};
const rows = [];
for (const ext of ["png", "svg", "pdf"]) {
  // Shared: the first export of the process pays for the browser (only for the first format).
  const shared = [];
  for (let r = 0; r <= repeat; r++) shared.push(await time(() => plots.exportFigure(fig, join(dir, `s${r}.${ext}`))));
  // Peer: a new browser for every export.
  const fresh = [];
  for (let r = 0; r < Math.min(repeat, 2); r++)
    fresh.push(await time(() => plots.withExporter((ex) => ex.export(fig, join(dir, `f${r}.${ext}`)))));
  const later = shared.slice(1);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  rows.push({
    format: ext,
    "first (s)": shared[0].toFixed(2),
    "second (s)": later[0].toFixed(3),
    "later mean (s)": mean(later).toFixed(3),
    "fresh browser each (s)": mean(fresh).toFixed(2),
    "speed-up": `${(mean(fresh) / mean(later)).toFixed(1)}×`,
  });
}
console.table(rows);
console.log(`node ${process.version}, ${process.platform}; figure: loss, ${n} steps, exported at its default size`);
await plots.closeSharedExporter();
rmSync(dir, { recursive: true, force: true });
