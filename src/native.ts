// Loads the native addon (built by cmake-js into build/Release) and types its surface. The addon
// is internal to the package (src/index.ts does not export it): its callers here pass values the
// zod schemas accepted, and the binding converts them without checking them again.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "./paths.js";
import type { LayerStatColumns } from "./tracking/layerStats.js";
import type { KnobField, Knobs } from "./knobs.js";

// The knobs are typed from the core's table (src/knobs.ts) and the layer statistics by their
// list; re-exported here because they are part of the addon's surface.
export type { Knobs };
/** Per-layer telemetry, one entry per BitLinear layer in each column. */
export type LayerColumns = LayerStatColumns;

export type QuantName = "fp" | "ste" | "poltergeist";
export type DeviceName = "cpu" | "cuda" | "auto";
export type RecomputeMode = "none" | "block" | "auto";

export interface NativeModelConfig {
  vocab: number;
  dModel: number;
  layers: number;
  heads: number;
  ffn: number;
  seq: number;
  ropeTheta?: number;
  normEps?: number;
  initStd?: number;
}

export interface NativeTrainerConfig {
  model: NativeModelConfig;
  quant: QuantName;
  actBits: number | null;
  batch: number;
  accum: number;
  /** 0 = auto. */
  microBatch?: number;
  recompute?: RecomputeMode;
  /** Bytes; 0 = no budget. */
  memoryBudget?: number;
  seed: number;
  warmup: number;
  totalSteps: number;
  minLrRatio?: number;
  beta1?: number;
  beta2?: number;
  weightDecay?: number;
  gradClip?: number;
  knobs: Partial<Knobs>;
  device: DeviceName;
  threads?: number;
  /** Data-parallel communicator (docs/distributed.md); absent: one process. */
  distributed?: "mpi" | "nccl";
}

export interface NativeStep {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  stepMs: number;
  peakMemoryBytes: number;
  layers: LayerColumns;
}

export interface NativeTrainSummary {
  steps: number;
  step: number;
  stopped: boolean;
  lastLoss: number | null;
  seconds: number;
}

export interface NativeInfo {
  step: number;
  tokens: number;
  device: string;
  backend: "cpu" | "cuda";
  quant: QuantName;
  paramCount: number;
  trainTokens: number;
  /** The execution plan in use. */
  microBatch: number;
  recompute: "none" | "block";
  chunksPerStep: number;
  plannedBytes: number;
  /** Data parallel: this process's rank, the number of ranks and the communicator (null: none). */
  rank: number;
  worldSize: number;
  distributed: "mpi" | "nccl" | null;
  layers: { name: string; rows: number; cols: number }[];
}

/** One execution plan and its predicted peak memory, in bytes. */
export interface NativeMemoryPlan {
  microBatch: number;
  recompute: "none" | "block";
  totalBytes: number;
  fits: boolean;
  params: number;
  optimizer: number;
  grads: number;
  ternaryState: number;
  activations: number;
  scratch: number;
  backendScratch: number;
}

export interface NativeMemoryPlanning {
  device: string;
  budget: number;
  /** Index of the plan the trainer would use; -1 when none fits the budget. */
  chosen: number;
  candidates: NativeMemoryPlan[];
  /** Bytes each data-parallel rank all-reduces per step (config.worldSize ranks). */
  wire: NativeWireBytes;
}

export interface NativeWireBytes {
  worldSize: number;
  /** fp gradients (float32). */
  grads: number;
  /** Loss, tokens, refusal flag, state digest and the Ghost Scale gradients (float64). */
  scalars: number;
  /** The step's vote changes: int8 while worldSize * chunks per step <= 127, else int32. */
  votes: number;
  voteType: "int8" | "int32";
  total: number;
}

export interface NativeMemory {
  params: number;
  optimizer: number;
  grads: number;
  ternaryState: number;
  ternaryWeights: number;
  activations: number;
  scratch: number;
  deviceInUse: number;
  devicePeak: number;
  /** The plan's predicted peak, to compare with devicePeak. */
  planned: number;
}

export type LayerRef = string | number;

export interface NativeTrainer {
  setTrainData(tokens: Int32Array): void;
  train(n: number, onStep?: (s: NativeStep) => void): Promise<NativeTrainSummary>;
  stop(): boolean;
  isTraining(): boolean;
  setKnobs(k: Partial<Knobs>): Knobs;
  getKnobs(): Knobs;
  info(): NativeInfo;
  layerStats(): LayerColumns;
  codes(layer: LayerRef): Int8Array;
  votes(layer: LayerRef): Int8Array;
  flipProbabilities(layer: LayerRef): Float32Array;
  weights(layer: LayerRef): Float32Array;
  setCodes(layer: LayerRef, codes: Int8Array): void;
  setVotes(layer: LayerRef, votes: Int8Array): void;
  scales(): Float32Array;
  scaleGrads(): Float32Array;
  setScale(layer: LayerRef, s: number): void;
  gamma0(): Float32Array;
  memory(): NativeMemory;
  accumulate(): number;
  applyStep(): NativeStep;
  batchLoss(inputs: Int32Array, targets: Int32Array, B: number, T: number): number;
  evaluate(tokens: Int32Array, window?: number): Promise<{ lossSum: number; count: number }>;
  generate(prompt: Int32Array, n: number, temperature?: number, topK?: number, seed?: number): Promise<Int32Array>;
  save(path: string, extraJson?: string): Promise<string>;
  /** otherActBits: accept a checkpoint trained with another actBits (evaluation with/without it). */
  load(path: string, options?: { otherActBits?: boolean }): Promise<string>;
  /** Data parallel: every rank takes rank `root`'s whole training state (collective). */
  broadcastState(root?: number): void;
  dispose(): void;
  /** Next-token logits [T * vocab] at every position of one window of T <= seq tokens (forward only). */
  logits(tokens: Int32Array): Float32Array;
}

interface NativeModule {
  NativeTrainer: new (cfg: NativeTrainerConfig) => NativeTrainer;
  cudaInfo(): { built: boolean; devices: number };
  planMemory(cfg: NativeTrainerConfig & { worldSize?: number }): NativeMemoryPlanning;
  version: string;
  /** The data-parallel communicators this build has, comma-separated ("mpi,nccl", "mpi" or ""). */
  communicators: string;
  /** The layer statistics the trainer reports, in column order (native/include/primal/layer_stats.h). */
  layerStats: { name: string; type: "f32" | "i32" }[];
  /** The core's knob table (native/include/primal/knobs.h): what src/knobs.ts builds zod from. */
  knobFields: KnobField[];
  /**
   * A checkpoint's metadata strings, their checksums verified (throws naming the file and field);
   * `checked` false: written before metadata checksums existed. Reads only the header of a file
   * the caller has made sure is a regular file.
   */
  checkpointMetadata(path: string): { checked: boolean; fields: Record<string, string> };
  /** The core's value of every config field left out (native/include/primal/trainer.h). */
  configDefaults: Required<Omit<NativeTrainerConfig, "device" | "threads" | "knobs" | "model" | "distributed">> & {
    model: Required<NativeModelConfig>;
    knobs: Knobs;
  };
}

let mod: NativeModule | undefined;

/** The addon; throws a clear error when it has not been built. */
export function native(): NativeModule {
  if (mod) return mod;
  const root = packageRoot();
  const candidates = [
    process.env.PRIMAL_NATIVE,
    join(root, "build", "Release", "primal_native.node"),
    join(root, "build", "Debug", "primal_native.node"),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `primal: the native addon is not built (looked for ${candidates.join(", ")}). ` +
        "Run `npm install` (needs CMake and a C++17 compiler) or `npm run build:native`.",
    );
  }
  const require = createRequire(import.meta.url);
  mod = require(found) as NativeModule;
  return mod;
}
