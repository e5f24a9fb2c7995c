#!/usr/bin/env node
// CPU benchmark: tokens/s and peak RSS of PRIMAL on the `small` preset for each quantizer,
// beside the same model in PyTorch (fp32, same thread count, BitNet-style STE), measured in the
// same run. Each engine runs in its own process so peak RSS is its own.
//   node test/bench/cpu/run.mjs [--steps 10] [--warmup 2] [--batch 16] [--threads 2] [--preset small]
// PyTorch: PRIMAL_PYTHON (default: the first of python3, /usr/bin/python3 that imports torch).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dirname, "..", "..", "..");
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const steps = args.steps ?? "10",
  warmup = args.warmup ?? "2",
  batch = args.batch ?? "16";
const threads = args.threads ?? "2",
  preset = args.preset ?? "small";

const bench = [join(root, "build", "native", "primal_bench"), join(root, "build", "Release", "primal_bench")].find(
  existsSync,
);
if (!bench) {
  console.error("primal_bench not built: run `npm install` first");
  process.exit(1);
}

function lastJson(out) {
  const line = out
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .pop();
  return line ? JSON.parse(line) : null;
}

function python() {
  for (const p of [process.env.PRIMAL_PYTHON, "python3", "/usr/bin/python3"].filter(Boolean)) {
    const r = spawnSync(p, ["-c", "import torch"], { encoding: "utf8" });
    if (r.status === 0) return p;
  }
  return null;
}

/** The same flags for PRIMAL and its PyTorch peer: the two must measure the same run. */
const benchFlags = (quant) => [
  "--device",
  "cpu",
  "--preset",
  preset,
  "--quant",
  quant,
  "--batch",
  batch,
  "--steps",
  steps,
  "--warmup",
  warmup,
  "--threads",
  threads,
];

const rows = [];
for (const quant of ["fp", "ste", "poltergeist"]) {
  const r = spawnSync(bench, benchFlags(quant), { encoding: "utf8" });
  const j = lastJson(r.stdout);
  if (!j || j.error) throw new Error(`primal_bench ${quant} failed: ${r.stdout}${r.stderr}`);
  rows.push(j);
}

const py = python();
const peers = {};
if (py) {
  for (const quant of ["fp", "ste"]) {
    const r = spawnSync(py, [join(root, "test", "bench", "peer", "torch_peer.py"), ...benchFlags(quant)], {
      encoding: "utf8",
    });
    const j = lastJson(r.stdout);
    peers[quant] = j && !j.error ? j : null;
    if (!peers[quant]) console.error(`pytorch ${quant} failed: ${r.stdout}${r.stderr.slice(-2000)}`);
  }
} else {
  console.error("PyTorch peer skipped: no python with torch (set PRIMAL_PYTHON, or apt-get install python3-torch)");
}

const mib = (b) => (b / 2 ** 20).toFixed(1);
console.log(
  `\nPRIMAL CPU benchmark: preset ${preset}, batch ${batch}, ${threads} threads, ${steps} timed steps (device: ${rows[0].device})`,
);
console.log("quant        primal tok/s  peak RSS MiB | pytorch peer    tok/s  peak RSS MiB | ratio");
for (const r of rows) {
  const peerQuant = r.quant === "poltergeist" ? "ste" : r.quant;
  const p = peers[peerQuant];
  const ratio = p ? (r.tokensPerSec / p.tokensPerSec).toFixed(2) + "x" : "n/a";
  console.log(
    `${r.quant.padEnd(12)} ${r.tokensPerSec.toFixed(0).padStart(12)}  ${mib(r.peakRssBytes).padStart(12)} | ${("torch " + peerQuant).padEnd(12)} ${p ? p.tokensPerSec.toFixed(0).padStart(8) : "     n/a"}  ${p ? mib(p.peakMemoryBytes).padStart(12) : "         n/a"} | ${ratio}`,
  );
}
const polt = rows.find((r) => r.quant === "poltergeist");
console.log(
  `\nPoltergeist state: ${polt.ternaryStateBytes} bytes for ${polt.ternaryWeights} ternary weights = ${(polt.ternaryStateBytes / polt.ternaryWeights).toFixed(4)} bytes/weight (code 1 + vote 1 + per-layer scale state)`,
);
console.log("\nMemory breakdown (MiB, from the engine's own accounting):");
console.log("quant        params  adam m+v   grads  ternary state  activations  scratch");
for (const r of rows) {
  const m = r.memory;
  console.log(
    `${r.quant.padEnd(12)} ${mib(m.params).padStart(6)} ${mib(m.optimizer).padStart(9)} ${mib(m.grads).padStart(7)} ${mib(m.ternaryState).padStart(14)} ${mib(m.activations).padStart(12)} ${mib(m.scratch).padStart(8)}`,
  );
}
const bytesPerTernary = (r) =>
  r.quant === "poltergeist" ? r.memory.ternaryState / r.ternaryWeights : (4 * r.ternaryWeights * 4) / r.ternaryWeights; // latent W + grad + Adam m, v
console.log(
  `bytes of trainer state per ternary weight: ${rows.map((r) => `${r.quant} ${bytesPerTernary(r).toFixed(3)}`).join(", ")} (target for poltergeist: <= 2.1)`,
);
console.log(JSON.stringify({ primal: rows, pytorch: peers }));
