// Benchmark (not a test): how long listing N runs takes, through the API (listRuns, runs()) and
// the CLI (`primal runs --json`), over a home of N runs of S steps each written by RunStore
// (metrics, 14 layers of telemetry, the knobs of every step, a custom metric, tags; half of
// them points of a sweep). Usage: node test/bench/tracking/list-runs.mjs [N=1000] [S=200]
// Needs the compiled package (npx tsc -p tsconfig.json).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dirname, "..", "..", "..");
const { RunStore, listRuns, runs } = await import(join(root, "dist", "src", "index.js"));

const N = Number(process.argv[2] ?? 1000);
const S = Number(process.argv[3] ?? 200);
const home = mkdtempSync(join(tmpdir(), "primal-bench-list-"));
const names = Array.from({ length: 14 }, (_, i) => `blocks.${i >> 3}.l${i % 7}`);
const knobs = { bridge: 2 / 3, flipRate: 0.01, pMax: 0.5, voteKeep: 0.95, deadzone: 0, lr: 3e-3, scaleLr: 1e-2 };

const t0 = performance.now();
for (let r = 0; r < N; r++) {
  const store = RunStore.create({
    home,
    config: {
      preset: "tiny",
      quant: r % 3 ? "poltergeist" : "ste",
      seed: r % 4,
      steps: S,
      knobs: { ...knobs, flipRate: 0.01 * (1 + (r % 5)) },
    },
    versions: { primal: "bench", native: "bench" },
    device: "cpu",
    seed: r % 4,
    tags: r % 2 ? ["bench", "odd"] : ["bench"],
    ...(r % 2 ? { sweep: { id: "bench", point: r, key: "000000000000", values: { seed: r % 4 } } } : {}),
    arrow: { flushRows: 4096, flushIntervalMs: 0 },
  });
  for (let s = 1; s <= S; s++) {
    store.appendMetrics({
      step: s,
      loss: 5 - s / S,
      lr: 1e-3,
      gradNorm: 1,
      tokens: s * 512,
      tokensPerSec: 1e4,
      stepMs: 50,
      peakMemoryBytes: 1e6,
      valLoss: s % 50 === 0 ? 4 : null,
    });
    store.appendLayers({ step: s, names, scale: new Float32Array(14).fill(0.1), flips: new Int32Array(14).fill(3) });
    store.recordKnobs(s, knobs);
    if (s % 10 === 0) store.logCustom(s, { probe: s / S });
  }
  store.setStatus(r % 7 ? "finished" : "stopped", S);
  store.close();
}
const built = (performance.now() - t0) / 1000;

/** Median wall time of `reps` calls, and the CPU time (user + system) of the median call. */
function time(f, reps = 3) {
  const runs = [];
  let out;
  for (let i = 0; i < reps; i++) {
    const a = performance.now();
    const c = process.cpuUsage();
    out = f();
    const u = process.cpuUsage(c);
    runs.push({ ms: performance.now() - a, cpuMs: (u.user + u.system) / 1000 });
  }
  runs.sort((a, b) => a.ms - b.ms);
  return { ...runs[Math.floor(reps / 2)], out };
}
const api = time(() => listRuns(home));
const filtered = time(() => listRuns(home, { filter: ["knobs.flipRate=0.03"], tag: "odd", sort: "bestValLoss" }));
const table = time(() => runs({ home }));
const cli = time(() =>
  execFileSync(process.execPath, [join(root, "bin", "primal.js"), "runs", "--json", "--home", home], {
    maxBuffer: 1 << 30,
  }),
);
// The CLI's fixed cost: Node and the package loading, over an empty home.
const empty = mkdtempSync(join(tmpdir(), "primal-bench-empty-"));
const startup = time(() =>
  execFileSync(process.execPath, [join(root, "bin", "primal.js"), "runs", "--json", "--home", empty]),
);
rmSync(empty, { recursive: true, force: true });
const cliRuns = JSON.parse(cli.out.toString()).length;
const du = execFileSync("du", ["-sm", home]).toString().split("\t")[0];
console.log(
  JSON.stringify({
    runs: N,
    stepsPerRun: S,
    homeMiB: Number(du),
    buildSeconds: Number(built.toFixed(1)),
    listRunsMs: Math.round(api.ms),
    listRunsCpuMs: Math.round(api.cpuMs),
    listRunsFilteredMs: Math.round(filtered.ms),
    filteredRuns: filtered.out.length,
    runsTableMs: Math.round(table.ms),
    runsTableRows: table.out.numRows,
    cliJsonMs: Math.round(cli.ms),
    cliStartupMs: Math.round(startup.ms),
    cliRuns,
  }),
);
if (process.env.KEEP_HOME) console.log("home", home);
else rmSync(home, { recursive: true, force: true });
