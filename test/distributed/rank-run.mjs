// One rank of the data-parallel contract test (test/distributed/mpi.test.ts), also its one-rank
// reference. Trains the tiny model on CPU with one thread for `steps` steps and writes what must
// agree (losses, flips, codes, votes, Ghost Scales, step, tokens) as JSON to `out` (rank 0 only):
//   node rank-run.mjs <out.json> <steps> <accum> [flags]
// flags, comma-separated: "mpi" joins MPI_COMM_WORLD (config.distributed); "edge" starts every
// vote at +-126, so the step's clamp is exercised; "die=N" makes rank 1 SIGKILL itself when step
// N starts; "seedByRank" gives each rank another seed (a misconfigured launch); "save=PATH" has
// rank 0 write a checkpoint at the end; "load=PATH" has rank 0 read one and every rank take its
// state from rank 0 (a distributed resume); "drift=N" nudges rank 1's first Ghost Scale when step N
// starts, so the ranks hold different models.
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [out, stepsArg, accumArg, flagArg = ""] = process.argv.slice(2);
const flags = new Set(flagArg.split(",").filter((f) => f));
const dist = flags.has("mpi") ? "mpi" : undefined;
const dieArg = [...flags].find((f) => f.startsWith("die="))?.slice(4);
const flagValue = (name) => [...flags].find((f) => f.startsWith(name + "="))?.slice(name.length + 1);
const rankEnv = Number(process.env.OMPI_COMM_WORLD_RANK ?? process.env.PMI_RANK ?? 0);
const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, "..", "..");
const { NativeTrainer } = require(join(root, "build", "Release", "primal_native.node"));

const text = Buffer.from(
  "Ghosts vote in the attic; at dawn the weights flip, one rung at a time, and nobody hears them. ".repeat(80),
  "latin1",
);
const nt = new NativeTrainer({
  model: { vocab: 256, dModel: 64, layers: 2, heads: 4, ffn: 192, seq: 32 },
  quant: "poltergeist",
  actBits: 8,
  batch: 2,
  accum: Number(accumArg),
  seed: flags.has("seedByRank") ? 7 + rankEnv : 7,
  warmup: 2,
  totalSteps: 20,
  knobs: { flipRate: 0.2, pMax: 0.9 },
  device: "cpu",
  threads: 1,
  ...(dist === "mpi" ? { distributed: "mpi" } : {}),
});
nt.setTrainData(Int32Array.from(text));
let info = nt.info();
const load = flagValue("load");
if (load !== undefined) {
  if (info.rank === 0) await nt.load(load);
  if (info.worldSize > 1) nt.broadcastState(0);
  info = nt.info();
}
if (flags.has("edge"))
  info.layers.forEach((_, l) => {
    const n = nt.votes(l).length;
    nt.setVotes(
      l,
      Int8Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 126 : i % 3 === 1 ? -126 : 0)),
    );
  });
const losses = [];
const flips = [];
const steps = Number(stepsArg);
const die = dieArg === undefined ? -1 : Number(dieArg);
const t0 = process.hrtime.bigint();
for (let s = 0; s < steps; s++) {
  if (s === die && info.rank === 1) process.kill(process.pid, "SIGKILL");
  if (s === Number(flagValue("drift") ?? -1) && info.rank === 1) nt.setScale(0, nt.scales()[0] * 1.001);
  const r = await nt.train(1, (st) => {
    losses.push(st.loss);
    flips.push(st.layers.flips.reduce((a, b) => a + b, 0));
  });
  if (r.steps !== 1) throw new Error(`step ${s}: train returned ${JSON.stringify(r)}`);
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const save = flagValue("save");
if (save !== undefined && info.rank === 0) await nt.save(save, "{}");
const hash = (a) =>
  createHash("sha256")
    .update(Buffer.from(a.buffer, a.byteOffset, a.byteLength))
    .digest("hex");
const layers = info.layers.map((_, l) => ({ codes: hash(nt.codes(l)), votes: hash(nt.votes(l)) }));
const votes = Array.from(nt.votes(0).subarray(0, 64));
if (info.rank === 0)
  writeFileSync(
    out,
    JSON.stringify({
      worldSize: info.worldSize,
      distributed: info.distributed,
      losses,
      flips,
      scales: Array.from(nt.scales()),
      layers,
      votes,
      step: nt.info().step,
      tokens: nt.info().tokens,
      seconds,
    }),
  );
nt.dispose();
