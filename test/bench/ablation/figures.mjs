// Draws the figures of docs/results.md from the result files under results/, in the paper
// style (3.5 in wide, 300 dpi PNG, vector SVG and PDF with the font embedded), into
// docs/figures/. Needs dist/ (npm run build:ts) and Chromium.
//   node test/bench/ablation/figures.mjs [--out DIR]
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { plots } from "../../../dist/src/index.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const i = process.argv.indexOf("--out");
const out = i > 0 ? process.argv[i + 1] : join(root, "docs", "figures");

const tiny = plots.readAblation(join(root, "results", "ablation", "tiny-150steps.jsonl"));
const small = plots.readAblation(join(root, "results", "ablation", "small-300steps.jsonl"));

plots.style("paper");
const figures = {
  "ablation-tiny": plots.ablationChart(tiny, {
    variants: ["default", "frozen", "bridgeOff", "ste", "fp"],
    labels: { default: "Poltergeist", frozen: "codes<br>frozen", bridgeOff: "bridge<br>off", ste: "STE", fp: "fp" },
  }),
  "sweep-flipRate": plots.knobSweep(tiny, "flipRate", { defaultValue: 0.01 }),
  "small-heldout": plots.ablationChart(small, {
    labels: { default: "Poltergeist", ste: "STE", "flipRate=0.05": "Poltergeist,<br>flipRate 0.05" },
  }),
  "small-wikitext": plots.ablationChart(small, {
    metric: "wikitextBpb",
    labels: { default: "Poltergeist", ste: "STE", "flipRate=0.05": "Poltergeist,<br>flipRate 0.05" },
  }),
};
const files = Object.entries(figures).flatMap(([name, figure]) =>
  ["png", "svg", "pdf"].map((ext) => ({ figure, path: join(out, `${name}.${ext}`) })),
);
await plots.exportFigures(files, { onProgress: (done, total, path) => console.log(`${done}/${total} ${path}`) });
