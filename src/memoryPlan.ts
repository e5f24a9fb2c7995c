// Memory planning from TypeScript: which micro-batch and recompute mode a config would run with,
// and what every alternative would cost, before any model is built.
import { tableFromArrays, type Table } from "apache-arrow";
import { nativeConfig, resolveConfig, type TrainerConfigInput } from "./config.js";
import { native, type NativeMemoryPlanning } from "./native.js";
import { formatBytes } from "./byteSize.js";
import { withUnits } from "./tables.js";

export type MemoryPlanning = NativeMemoryPlanning;

/**
 * The execution plans the trainer considers for this config on its device (micro-batch sizes
 * dividing `batch`, largest first; no recompute before block recompute), each with its predicted
 * peak memory; `chosen` is the one `Trainer.create` would use (-1: nothing fits the budget).
 */
export function planMemory(input: TrainerConfigInput = {}, opts: { worldSize?: number } = {}): MemoryPlanning {
  // The plan never starts a communicator: `distributed` only matters to a running trainer.
  const { distributed: _, ...cfg } = nativeConfig(resolveConfig(input));
  return native().planMemory({ ...cfg, worldSize: opts.worldSize ?? 1 });
}

/** The planning as an Arrow table (one row per candidate), for notebooks. */
export function planTable(p: MemoryPlanning): Table {
  const c = p.candidates;
  const col = (f: (x: (typeof c)[number]) => number) => Float64Array.from(c, f);
  const bytes = [
    "totalBytes",
    "params",
    "optimizer",
    "grads",
    "ternaryState",
    "activations",
    "scratch",
    "backendScratch",
  ];
  return withUnits(
    tableFromArrays({
      microBatch: Int32Array.from(c, (x) => x.microBatch),
      recompute: c.map((x) => x.recompute),
      chosen: c.map((_, i) => i === p.chosen),
      fits: c.map((x) => x.fits),
      totalBytes: col((x) => x.totalBytes),
      params: col((x) => x.params),
      optimizer: col((x) => x.optimizer),
      grads: col((x) => x.grads),
      ternaryState: col((x) => x.ternaryState),
      activations: col((x) => x.activations),
      scratch: col((x) => x.scratch),
      backendScratch: col((x) => x.backendScratch),
    }),
    { bytes },
  );
}

/** Plain-text rendering for the CLI. */
export function formatPlanning(p: MemoryPlanning): string {
  const lines = [
    `device ${p.device}; budget ${p.budget > 0 ? formatBytes(p.budget) : "none"}`,
    "  microBatch  recompute  predicted peak  activations  fits",
  ];
  p.candidates.forEach((x, i) => {
    lines.push(
      `${i === p.chosen ? "→" : " "} ${String(x.microBatch).padStart(10)}  ${x.recompute.padEnd(9)}  ` +
        `${formatBytes(x.totalBytes).padStart(14)}  ${formatBytes(x.activations).padStart(11)}  ${x.fits ? "yes" : "no"}`,
    );
  });
  if (p.chosen < 0) lines.push("nothing fits the budget: lower batch or seq, or raise the budget");
  const w = p.wire;
  if (w.worldSize > 1) {
    lines.push(
      `data parallel over ${w.worldSize} ranks: each rank holds a full replica (the peak above, per rank)`,
      `  all-reduced per step and rank: ${formatBytes(w.total)} = fp gradients ${formatBytes(w.grads)} + ` +
        `votes ${formatBytes(w.votes)} (${w.voteType}) + scalars ${formatBytes(w.scalars)}; ` +
        `a ring all-reduce moves about ${formatBytes((2 * (w.worldSize - 1) * w.total) / w.worldSize)} in and out per rank`,
    );
  }
  return lines.join("\n");
}
