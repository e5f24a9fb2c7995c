// The Trainer facade researchers drive from a notebook or the CLI: a native trainer plus its
// data and its run directory. Every step is recorded (metrics, layer telemetry), every knob
// change is an event, samples and checkpoints land in the run folder.
import { existsSync, statSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import type { Table } from "apache-arrow";
import {
  nativeConfig,
  resolveConfig,
  savedConfigInput,
  type TrainerConfig,
  type TrainerConfigInput,
} from "./config.js";
import { parseKnobs, type Knobs } from "./knobs.js";
import {
  native,
  type LayerColumns,
  type LayerRef,
  type NativeInfo,
  type NativeMemory,
  type NativeStep,
  type NativeTrainer,
} from "./native.js";
import { STEP_LAYER_STATS, STORED_LAYER_STATS } from "./tracking/layerStats.js";
import { packageVersion } from "./paths.js";
import { layerTable, weightTable, withUnits, type BufferTableOptions } from "./tables.js";
import { loadTrainingData, type DataBundle, type EvalSet } from "./trainingData.js";
import { evalMetrics, type EvalMetrics } from "./data/evalMetrics.js";
import { RunStore, readRunMeta, type SweepRef } from "./tracking/runStore.js";
import { readAnnotations } from "./tracking/annotations.js";
import type { MetricsInput } from "./tracking/schemas.js";
import { readRun } from "./tracking/runReader.js";
import { hostHooks, type EvalProgress, type TrainObserver } from "./host.js";
import { EvaluationInterrupted, TrainingInterrupted } from "./interrupted.js";
import { exportCheckpointGGUF, type GGUFExportOptions, type GGUFExportResult } from "./export/llamaExport.js";
import { RunLock } from "./tracking/runLock.js";
import {
  checkpointCandidates,
  chooseCheckpoint,
  configSource,
  resumeConfig,
  uncheckedWarning,
  type ResumeChoice,
} from "./resumeCheckpoint.js";
import { makeRankScratch, removeRankScratch, sweepRankScratch } from "./rankScratch.js";
import { checkWorldSize, resumeCorpus, savedWorldSize } from "./resumeGuards.js";

export interface StepMetrics {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  tokensPerSec: number;
  stepMs: number;
  peakMemoryBytes: number;
  layers: LayerColumns;
}

export interface SampleRecord {
  step: number;
  prompt: string;
  text: string;
  temperature: number;
  topK: number;
  seed: number;
}

export interface TrainOptions {
  /** Called after every step on the main thread. */
  onStep?: (m: StepMetrics) => void;
  /** Called whenever the salad test produced a sample. */
  onSample?: (s: SampleRecord) => void;
  /**
   * Aborting it stops training at the next step boundary (`train` then resolves with
   * stopped: true); already aborted, `train` throws TrainingInterrupted. Default: the host's
   * signal (in a notebook, the kernel's interrupt).
   */
  signal?: AbortSignal;
  /**
   * Evaluate at the last step, before its checkpoint, so the evaluation lands on that step's
   * metrics row (the checkpoint writes the row to disk; a later evaluate() adds a second row).
   */
  evaluateAtEnd?: boolean;
  /** Progress of the evaluations run during training (evaluateAtEnd, eval.every). */
  onEvalProgress?: (p: EvalProgress) => void;
}

/** What a run records about itself beyond its config (Trainer.create's second argument). */
export interface RunMetadata {
  /** Tags the run starts with (add more with `t.tag()`). */
  tags?: readonly string[];
  /** A note to start with (add more with `t.note()`). */
  note?: string;
  /** The sweep point the run trains (set by `sweep()`). */
  sweep?: SweepRef;
}

export interface LogOptions {
  /** The step the values belong to; default the trainer's current step. */
  step?: number;
}

export interface EvaluateOptions {
  /** Aborting it cancels the evaluation at the next window; `evaluate` throws EvaluationInterrupted. */
  signal?: AbortSignal;
  /** Called as windows are scored (every few thousand tokens). */
  onProgress?: (p: EvalProgress) => void;
}

export interface TrainSummary {
  /** Steps completed by this call. */
  steps: number;
  /** The trainer's step after the call. */
  step: number;
  stopped: boolean;
  loss: number | null;
  /** Tokens over the summed step times of this call, its first (slower) steps included. */
  tokensPerSec: number;
  /**
   * Tokens per second of the median step of this call: what `primal_bench` reports, which times
   * steps after two warmup steps (the first step of a process takes about twice as long).
   */
  medianTokensPerSec: number;
  seconds: number;
  runDir: string;
  lastSample?: SampleRecord;
  eval?: EvaluationResult;
}

export interface EvaluationResult {
  step: number;
  validation?: EvalMetrics & { tokens: number };
  wikitext?: EvalMetrics & { tokens: number };
}

export interface SampleOptions {
  tokens?: number;
  temperature?: number;
  topK?: number;
  seed?: number;
  greedy?: boolean;
}

/** How a trainer executes its steps (resolved by the native memory planner). */
export interface ExecutionPlan {
  /** Windows per executed chunk; batch / microBatch chunks make one micro-batch. */
  microBatch: number;
  recompute: "none" | "block";
  /** Chunks per optimizer step (accum * batch / microBatch): the K of the flip probability. */
  chunksPerStep: number;
  /** Predicted peak memory of a step, bytes (compare with memory().devicePeak). */
  plannedBytes: number;
}

function planOf(info: NativeInfo): ExecutionPlan {
  return {
    microBatch: info.microBatch,
    recompute: info.recompute,
    chunksPerStep: info.chunksPerStep,
    plannedBytes: info.plannedBytes,
  };
}

/** Tokens per second of the median of `stepMs` (0 when there is none). */
function medianRate(stepMs: number[], tokensPerStep: number): number {
  const sorted = [...stepMs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return sorted.length > 0 && median > 0 ? tokensPerStep / (median / 1000) : 0;
}

/** Rows reach the disk within a second, so a live dashboard shows a step about a second later. */
const LIVE_FLUSH = { flushIntervalMs: 1000 };

export class Trainer {
  readonly config: TrainerConfig;
  readonly store: RunStore;
  private readonly nt: NativeTrainer;
  private readonly data: DataBundle;
  private training = false;
  private stopRequested = false;
  /** The running train() or evaluate() call, and whether it was asked to stop. */
  private busy: { what: "training" | "evaluating"; done: Promise<unknown>; stopping: boolean } | null = null;
  private lastEval: EvaluationResult | undefined;
  /** The newest metrics row is held back until the next row, so an evaluation at that step can fill valLoss. */
  private pendingRow: MetricsInput | undefined;
  /** The newest metrics row already handed to the store (an evaluation at its step repeats it). */
  private writtenRow: MetricsInput | undefined;
  /** The step the running native chunk ends at (its row waits for a possible evaluation). */
  private chunkEnd = -1;
  /** Per-layer statistics of the last applied step (flip counts exist only at a step). */
  private lastStepLayers: LayerColumns | undefined;
  private disposed = false;
  /** Layer names and shapes never change; cached so recording a step never waits on the native lock. */
  private readonly layerInfo: { name: string; rows: number; cols: number }[];
  private readonly deviceName: string;
  private readonly execPlan: ExecutionPlan;
  /** Mirrors the native step (updated from each step's report) so reading it never blocks. */
  private currentStep: number;
  /** Data parallel (docs/distributed.md): this process's rank and the number of ranks. */
  readonly rank: number;
  readonly worldSize: number;
  /** Ranks other than 0 keep their (unwritten) run records here, removed on dispose. */
  private readonly scratchHome: string | undefined;
  /** The knobs in effect, read through knobs() when the trainer opens and after each set(). */
  private effectiveKnobs: Knobs;

  private constructor(
    config: TrainerConfig,
    nt: NativeTrainer,
    data: DataBundle,
    store: RunStore,
    scratchHome?: string,
  ) {
    this.config = config;
    this.nt = nt;
    this.data = data;
    this.store = store;
    this.scratchHome = scratchHome;
    const info = nt.info();
    this.rank = info.rank;
    this.worldSize = info.worldSize;
    this.layerInfo = info.layers;
    this.deviceName = info.device;
    this.execPlan = planOf(info);
    this.currentStep = info.step;
    this.effectiveKnobs = this.knobs();
  }

  /** Validates the config, loads and tokenizes the data, builds the model and opens a run. */
  static async create(input: TrainerConfigInput = {}, metadata: RunMetadata = {}): Promise<Trainer> {
    const config = resolveConfig(input);
    const data = await loadTrainingData(config);
    const nt = Trainer.makeNative(config, data);
    const info = nt.info();
    sweepRankScratch();
    // Rank 0 alone writes the run; the other ranks record into a scratch folder nobody reads.
    const scratchHome = info.rank > 0 ? makeRankScratch(info.rank) : undefined;
    const home = scratchHome ?? config.home;
    let store: RunStore | undefined;
    try {
      store = RunStore.create({
        ...(home !== undefined ? { home } : {}),
        ...(config.name !== undefined ? { name: config.name } : {}),
        config: structuredClone({
          ...config,
          backend: info.backend,
          plan: planOf(info),
          worldSize: info.worldSize,
        }) as unknown as Record<string, unknown>,
        versions: { primal: packageVersion(), native: native().version },
        device: info.device,
        seed: config.seed,
        ...(metadata.sweep ? { sweep: metadata.sweep } : {}),
        ...(metadata.tags ? { tags: metadata.tags } : {}),
        arrow: LIVE_FLUSH,
      });
      if (metadata.note) store.annotate([{ kind: "note", text: metadata.note, step: 0 }]);
      store.event("start", {
        step: 0,
        device: info.device,
        params: info.paramCount,
        trainTokens: data.train.length,
        plan: planOf(info),
        worldSize: info.worldSize,
        distributed: info.distributed,
      });
    } catch (e) {
      // A failed write has set the run "failed" (RunStore does); free what this call took.
      try {
        store?.close();
      } catch {
        // The original error is the one to report.
      }
      nt.dispose();
      if (scratchHome) removeRankScratch(scratchHome);
      throw e;
    }
    return new Trainer(config, nt, data, store, scratchHome);
  }

  /**
   * Continues a run from its directory (the newest checkpoint that loads) or from a checkpoint
   * file. Resuming from a checkpoint older than the run's newest starts a branch and needs
   * `fork: true`: the later checkpoints are then moved to `checkpoints/abandoned-…/` (kept). The
   * run is locked first; a resume that fails writes nothing to the run.
   */
  static async resume(
    target: string,
    overrides: Pick<TrainerConfigInput, "device" | "threads" | "memoryBudget" | "distributed"> & {
      fork?: boolean;
      /**
       * The training text, given explicitly: needed when run.json names a corpus file outside the
       * run (a run folder may not make a resume read any file of the machine).
       */
      corpus?: string;
      /**
       * Continue on another number of ranks than the checkpoint was trained on: each step then
       * trains on ranks x batch x accum windows of the new world size (the global batch changes).
       */
      changeWorldSize?: boolean;
    } = {},
  ): Promise<Trainer> {
    const path = resolve(target);
    if (!existsSync(path)) throw new Error(`resume: '${target}' does not exist`);
    const isDir = statSync(path).isDirectory();
    const runDir = isDir ? path : resolve(path, "..", "..");
    if (!isDir && basename(dirname(path)) !== "checkpoints")
      throw new Error(`resume: '${target}' is not inside a run's checkpoints/ folder`);
    const { fork, corpus, changeWorldSize, ...machine } = overrides;
    let lock: RunLock | undefined;
    let nt: NativeTrainer | undefined;
    let store: RunStore | undefined;
    let scratchHome: string | undefined;
    try {
      // The run's own config, re-validated; only the machine side may change. The execution plan
      // is re-derived on the resuming device (the budget may differ there). The config comes from
      // the checked copy in the checkpoint (src/resumeCheckpoint.ts).
      const given = Object.entries(machine).filter(([, v]) => v !== undefined);
      const source = configSource(checkpointCandidates(runDir, isDir ? null : path, !!fork), !isDir);
      const { config, warnings } = resumeConfig(runDir, source, Object.fromEntries(given));
      config.data.corpus = resumeCorpus(runDir, config.data.corpus, corpus);
      const data = await loadTrainingData(config);
      const created = Trainer.makeNative(config, data);
      nt = created;
      const info = created.info();
      // Data parallel: rank 0 owns the run (its lock, its checkpoints); the others take its state.
      if (info.rank === 0) lock = RunLock.acquire(runDir);
      let choice: ResumeChoice | undefined;
      if (info.rank === 0) {
        choice = await chooseCheckpoint(runDir, source, (p) => created.load(p));
        checkWorldSize(
          savedWorldSize(choice.extra, choice.extra.config ?? savedConfigInput(readRunMeta(runDir).config)),
          info.worldSize,
          config.batch * config.accum,
          !!changeWorldSize,
          choice.checkpoint,
        );
      }
      // Every rank takes rank 0's state, knobs included: the core's knobs are the only ones.
      if (info.worldSize > 1) created.broadcastState(0);
      // This session starts from the checkpoint's knobs (config.knobs is what a session started with).
      config.knobs = created.getKnobs();
      const step = created.info().step;
      const ranks = { worldSize: info.worldSize, distributed: info.distributed };
      sweepRankScratch();
      if (!choice) {
        scratchHome = makeRankScratch(info.rank);
        store = RunStore.create({
          home: scratchHome,
          config: structuredClone(config) as unknown as Record<string, unknown>,
          versions: { primal: packageVersion(), native: native().version },
          device: info.device,
          seed: config.seed,
        });
        store.event("resume", { step, plan: planOf(info), ...ranks });
      } else {
        store = RunStore.open(runDir, { lock: lock!, arrow: LIVE_FLUSH });
        // Later checkpoints are damaged ones (skipped) or those of the branch being left (fork).
        const setAside = store.setAsideCheckpointsAfter(step, choice.damaged.length > 0 ? "damaged" : "abandoned");
        store.protectCheckpoint(choice.checkpoint);
        for (const message of [...warnings, ...uncheckedWarning(choice, source)])
          store.event("warning", { step, checkpoint: choice.checkpoint, message });
        store.event("resume", {
          step,
          checkpoint: choice.checkpoint,
          plan: planOf(info),
          ...ranks,
          ...(setAside ? { setAside } : {}),
          ...(fork && choice.damaged.length === 0 && setAside ? { fork: true } : {}),
          ...(choice.damaged.length > 0 ? { skippedDamaged: choice.damaged } : {}),
          ...(store.replacedLock ? { staleLock: store.replacedLock } : {}),
          ...(store.setAsideTails.length > 0 ? { setAsideTails: store.setAsideTails } : {}),
          ...(store.removedTemps.length > 0 ? { removedTemps: store.removedTemps } : {}),
        });
      }
      store.setStatus("running", step);
      return new Trainer(config, created, data, store, scratchHome);
    } catch (e) {
      nt?.dispose();
      try {
        store?.close();
      } finally {
        lock?.release();
        if (scratchHome) removeRankScratch(scratchHome);
      }
      throw e;
    }
  }

  private static makeNative(config: TrainerConfig, data: DataBundle): NativeTrainer {
    const { NativeTrainer: Native } = native();
    const nt = new Native(nativeConfig(config));
    try {
      nt.setTrainData(data.train);
    } catch (e) {
      nt.dispose();
      throw e;
    }
    return nt;
  }

  get runDir(): string {
    return this.store.dir;
  }
  get step(): number {
    this.check();
    return this.currentStep;
  }
  get device(): string {
    return this.deviceName;
  }
  /** How steps execute: micro-batch chunking, activation recompute and the predicted peak. */
  get plan(): ExecutionPlan {
    return { ...this.execPlan };
  }
  get isTraining(): boolean {
    return this.training;
  }
  /** The run as the plots expect it: metrics, layer telemetry and events read from disk. */
  get run(): ReturnType<typeof readRun> {
    if (!this.disposed) this.flush();
    return readRun(this.store.dir);
  }

  private check(): void {
    if (this.disposed) throw new Error("this Trainer has been disposed");
  }

  /**
   * Trains n steps on a worker thread. Resolves with a summary; stops early (cleanly, at a step
   * boundary) after stop(). Salad samples, evaluations and checkpoints happen between steps.
   */
  async train(n: number, opts: TrainOptions = {}): Promise<TrainSummary> {
    this.check();
    if (!Number.isInteger(n) || n < 0) throw new Error(`train: n must be a non-negative integer, got ${n}`);
    const signal = opts.signal ?? hostHooks().signal?.();
    // No await unless busy: a call in progress must be visible synchronously (isTraining, save()).
    if (this.busy) await this.idle("train");
    if (signal?.aborted)
      throw new TrainingInterrupted(
        `training was interrupted (trainer at step ${this.step}); run the cell again to continue`,
      );
    const observer = hostHooks().train?.(this, n);
    const onAbort = () => this.stop();
    signal?.addEventListener("abort", onAbort, { once: true });
    const done = this.trainSteps(n, opts, signal, observer);
    this.busy = { what: "training", done, stopping: false };
    try {
      const summary = await done;
      observer?.done?.(summary);
      return summary;
    } catch (e) {
      observer?.failed?.(e);
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (this.busy?.done === done) this.busy = null;
    }
  }

  /**
   * Waits for a call that was asked to stop and is finishing its step or window (so a cell run
   * again after an interrupt does not fail with "already training"); refuses a second call
   * while one is running.
   */
  private async idle(what: string): Promise<void> {
    const b = this.busy;
    if (!b) return;
    if (!b.stopping) throw new Error(`${what}: this trainer is already ${b.what}`);
    hostHooks().waiting?.(
      `${what}: waiting for the interrupted ${b.what === "training" ? "training step" : "evaluation"} to stop`,
    );
    await b.done.catch(() => undefined);
  }

  private async trainSteps(
    n: number,
    opts: TrainOptions,
    signal: AbortSignal | undefined,
    observer: TrainObserver | undefined,
  ): Promise<TrainSummary> {
    this.training = true;
    this.stopRequested = false;
    const c = this.config;
    const tokensPerStep = c.batch * c.accum * c.model.seq * this.worldSize;
    const t0 = performance.now();
    let done = 0;
    let lastLoss: number | null = null;
    let lastSample: SampleRecord | undefined;
    let stopped = false;
    let trainedMs = 0;
    const stepMs: number[] = [];
    const every = (k: number, s: number) => k > 0 && s % k === 0;
    try {
      while (done < n && !this.stopRequested) {
        const step = this.step;
        // Run natively up to the next step where a hook (sample, eval, checkpoint) is due.
        let chunk = n - done;
        for (const k of [c.sampleEvery, c.eval.every, c.checkpointEvery])
          if (k > 0) chunk = Math.min(chunk, k - (step % k));
        this.chunkEnd = step + chunk;
        const summary = await this.nt.train(chunk, (s: NativeStep) => {
          trainedMs += s.stepMs;
          stepMs.push(s.stepMs);
          const m = this.record(s, tokensPerStep);
          lastLoss = s.loss;
          observer?.step?.(m);
          opts.onStep?.(m);
        });
        done += summary.steps;
        const now = this.step;
        if (summary.steps > 0) {
          if (every(c.sampleEvery, now)) {
            lastSample = await this.salad(now);
            observer?.sample?.(lastSample);
            opts.onSample?.(lastSample);
          }
          const atEnd = opts.evaluateAtEnd === true && done >= n;
          if ((every(c.eval.every, now) || atEnd) && !this.stopRequested) {
            try {
              await this.evaluateNow({
                ...(signal ? { signal } : {}),
                onProgress: (p) => {
                  observer?.evaluation?.(p);
                  opts.onEvalProgress?.(p);
                },
              });
            } catch (e) {
              if (!(e instanceof EvaluationInterrupted)) throw e;
              stopped = true;
              break;
            }
          }
          if (every(c.checkpointEvery, now)) await this.checkpoint();
        }
        if (summary.stopped) {
          stopped = true;
          break;
        }
      }
      stopped = stopped || this.stopRequested;
      const step = this.step;
      if (done > 0 && !every(c.checkpointEvery, step)) await this.checkpoint();
      if (stopped) this.store.event("stop", { step });
      this.store.setStatus(stopped ? "stopped" : "running", step);
      this.store.flush();
      return {
        steps: done,
        step,
        stopped,
        loss: lastLoss,
        tokensPerSec: trainedMs > 0 ? (done * tokensPerStep) / (trainedMs / 1000) : 0,
        medianTokensPerSec: medianRate(stepMs, tokensPerStep),
        seconds: (performance.now() - t0) / 1000,
        runDir: this.store.dir,
        ...(lastSample ? { lastSample } : {}),
        ...(this.lastEval && this.lastEval.step === step ? { eval: this.lastEval } : {}),
      };
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const last = this.store.latestCheckpoint();
      // Each record of the failure is attempted on its own: with a full disk some of them fail
      // too, and run.json must still say "failed" (it needs the least space).
      const attempt = (f: () => void) => {
        try {
          f();
        } catch {
          // The original error is what the caller needs.
        }
      };
      attempt(() => this.flushPending());
      attempt(() => this.store.event("error", { step: this.step, message: msg }));
      attempt(() => this.store.flush());
      attempt(() => this.store.setStatus("failed", this.step, msg));
      throw new Error(`${msg}${last ? ` (last good checkpoint: ${last.path})` : ""}`, { cause: e });
    } finally {
      this.training = false;
    }
  }

  private record(s: NativeStep, tokensPerStep: number): StepMetrics {
    const m: StepMetrics = {
      step: s.step,
      loss: s.loss,
      lr: s.lr,
      gradNorm: s.gradNorm,
      tokens: s.tokens,
      tokensPerSec: s.stepMs > 0 ? tokensPerStep / (s.stepMs / 1000) : 0,
      stepMs: s.stepMs,
      peakMemoryBytes: s.peakMemoryBytes,
      layers: s.layers,
    };
    this.flushPending();
    const row: MetricsInput = {
      step: m.step,
      loss: m.loss,
      lr: m.lr,
      gradNorm: m.gradNorm,
      tokens: m.tokens,
      tokensPerSec: m.tokensPerSec,
      stepMs: m.stepMs,
      peakMemoryBytes: m.peakMemoryBytes,
    };
    // Only the last step of a native chunk can be followed by an evaluation at the same step
    // (hooks run between chunks): that row waits for it, the others are written now, so a live
    // reader (the board) sees a step as soon as the store flushes it.
    if (s.step === this.chunkEnd) this.pendingRow = row;
    else {
      this.writtenRow = row;
      this.store.appendMetrics(row);
    }
    this.lastStepLayers = s.layers;
    this.currentStep = s.step;
    const names = this.layerNames();
    const cols: Record<string, ArrayLike<number>> = {};
    for (const k of STORED_LAYER_STATS) cols[k] = s.layers[k];
    this.store.appendLayers({ step: s.step, names, scale: s.layers.scale, ...cols });
    // The knobs every step trained with, so comparisons see changes made mid-run.
    this.store.recordKnobs(s.step, this.effectiveKnobs);
    return m;
  }

  private flushPending(): void {
    const row = this.pendingRow;
    if (!row) return;
    // Handed over first: if the append's flush fails the row stays buffered in the store (and is
    // retried there), so it must not be appended a second time from here.
    this.pendingRow = undefined;
    this.writtenRow = row;
    this.store.appendMetrics(row);
  }

  /** Writes everything recorded so far to the run directory. */
  flush(): void {
    this.flushPending();
    this.store.flush();
  }

  /** Stops training at the next step boundary; `await train()` then resolves with stopped: true. */
  stop(): void {
    this.stopRequested = true;
    if (this.busy) this.busy.stopping = true;
    // Only a running native loop needs the signal; between chunks the facade's flag suffices.
    if (this.nt.isTraining()) this.nt.stop();
  }

  /**
   * Changes knobs between steps; each change is recorded as an event (step, old, new). Returns the
   * knobs now in force, as the core holds them (fp32, shown as the shortest decimal).
   */
  set(knobs: Partial<Knobs>): Knobs {
    this.check();
    const wanted = parseKnobs(knobs, "set");
    const before = this.nt.getKnobs();
    const after = this.nt.setKnobs(wanted);
    const step = this.step;
    for (const key of Object.keys(wanted))
      if (after[key] !== before[key]) this.store.event("set", { step, knob: key, old: before[key], new: after[key] });
    this.effectiveKnobs = after;
    this.flush();
    return after;
  }

  /** The knobs in force, read from the core (never waits for a running step). */
  knobs(): Knobs {
    this.check();
    return this.nt.getKnobs();
  }

  /**
   * Records your own metrics for a step (custom.arrows in the run, long format: step, time,
   * name, value), e.g. `t.log({ probeAcc: 0.61 })`. They are plotted like the built-in metrics.
   */
  log(values: Record<string, number>, opts: LogOptions = {}): void {
    this.check();
    if (values === null || typeof values !== "object" || Array.isArray(values))
      throw new TypeError("log: expected an object of { name: number }");
    this.store.logCustom(opts.step ?? this.step, values);
  }

  /** Adds tags to the run (words: letters, digits, `_ . : / = + @ -`). */
  tag(...tags: string[]): string[] {
    this.check();
    this.store.annotate(tags.map((tag) => ({ kind: "tag" as const, tag })));
    return this.tags();
  }

  /** Removes tags from the run. */
  untag(...tags: string[]): string[] {
    this.check();
    this.store.annotate(tags.map((tag) => ({ kind: "untag" as const, tag })));
    return this.tags();
  }

  /** The run's current tags. */
  tags(): string[] {
    return readAnnotations(this.store.dir).tags;
  }

  /** Adds a note to the run, stamped with the current step. */
  note(text: string): void {
    this.check();
    this.store.annotate([{ kind: "note", text, step: this.step }]);
  }

  /**
   * Held-out loss, perplexity and bits per byte on the corpus validation split and WikiText-2
   * (each cut to `eval.maxTokens` tokens when that is set). Scored a few thousand tokens at a
   * time, so progress can be reported and an abort stops it at the next window.
   */
  async evaluate(opts: EvaluateOptions = {}): Promise<EvaluationResult> {
    this.check();
    const signal = opts.signal ?? hostHooks().signal?.();
    if (this.busy) await this.idle("evaluate");
    if (signal?.aborted) throw new EvaluationInterrupted(`evaluation was interrupted (trainer at step ${this.step})`);
    const sets = [this.data.validation, this.data.wikitext].filter((x): x is EvalSet => x !== undefined);
    const observer = hostHooks().evaluate?.(
      this,
      sets.reduce((a, x) => a + Math.max(0, x.tokens.length - 1), 0),
    );
    const done = this.evaluateNow({
      ...(signal ? { signal } : {}),
      onProgress: (p) => {
        observer?.progress?.(p);
        opts.onProgress?.(p);
      },
    });
    this.busy = { what: "evaluating", done, stopping: false };
    try {
      const r = await done;
      observer?.done?.(r);
      return r;
    } catch (e) {
      observer?.failed?.(e);
      throw e;
    } finally {
      if (this.busy?.done === done) this.busy = null;
    }
  }

  /** Scores one split in chunks of whole windows: the same windows as one native call. */
  private async scoreSplit(
    set: EvalSet,
    index: number,
    splits: number,
    opts: EvaluateOptions,
  ): Promise<EvalMetrics & { tokens: number }> {
    const T = this.config.model.seq;
    const total = Math.max(0, set.tokens.length - 1);
    // Whole micro-batches of windows, about 16k tokens a call (a fraction of a second on CPU).
    const perCall = T * this.execPlan.microBatch * Math.max(1, Math.ceil(16384 / (T * this.execPlan.microBatch)));
    let lossSum = 0;
    let count = 0;
    const cancel = () => this.nt.stop();
    opts.signal?.addEventListener("abort", cancel, { once: true });
    try {
      for (let start = 0; start < total || start === 0; start += perCall) {
        if (opts.signal?.aborted)
          throw new EvaluationInterrupted(`evaluation was interrupted (trainer at step ${this.step})`);
        opts.onProgress?.({ split: set.name, done: Math.min(start, total), total, splitIndex: index, splits });
        // Window i covers tokens [i*T, i*T + T]: a chunk ends one token past its last window.
        const chunk = set.tokens.subarray(start, Math.min(set.tokens.length, start + perCall + 1));
        let r: { lossSum: number; count: number };
        try {
          r = await this.nt.evaluate(chunk, T);
        } catch (e) {
          if (opts.signal?.aborted)
            throw new EvaluationInterrupted(`evaluation was interrupted (trainer at step ${this.step})`);
          throw e;
        }
        lossSum += r.lossSum;
        count += r.count;
        if (total === 0) break;
      }
    } finally {
      opts.signal?.removeEventListener("abort", cancel);
    }
    opts.onProgress?.({ split: set.name, done: total, total, splitIndex: index, splits });
    return { ...evalMetrics({ lossSumNats: lossSum, tokensScored: count, bytesScored: set.bytes }), tokens: count };
  }

  private async evaluateNow(opts: EvaluateOptions): Promise<EvaluationResult> {
    const step = this.step;
    const result: EvaluationResult = { step };
    const splits = (this.data.validation ? 1 : 0) + (this.data.wikitext ? 1 : 0);
    if (this.data.validation) result.validation = await this.scoreSplit(this.data.validation, 0, splits, opts);
    if (this.data.wikitext) result.wikitext = await this.scoreSplit(this.data.wikitext, splits - 1, splits, opts);
    const primary = result.wikitext ?? result.validation;
    this.store.event("eval", {
      step,
      ...(result.validation ? { validation: result.validation } : {}),
      ...(result.wikitext ? { wikitext: result.wikitext } : {}),
    });
    if (primary && this.pendingRow && this.pendingRow.step === step) {
      this.pendingRow.valLoss = primary.loss;
      this.pendingRow.valBpb = primary.bpb;
    } else if (primary && this.writtenRow && this.writtenRow.step === step) {
      // The row of this step is on disk already (a checkpoint wrote it): add a second row for
      // the step that carries the evaluation; readers keep the last row of each step.
      this.store.appendMetrics({ ...this.writtenRow, time: Date.now(), valLoss: primary.loss, valBpb: primary.bpb });
    }
    this.flush();
    this.lastEval = result;
    return result;
  }

  /** Generates text from a prompt (greedy, or temperature + top-k with a seed). */
  async sample(prompt: string, opts: SampleOptions = {}): Promise<string> {
    this.check();
    const tok = this.data.tokenizer;
    const ids = tok.encode(prompt);
    if (ids.length === 0) throw new Error("sample: the prompt encodes to no tokens");
    const temperature = opts.greedy ? 0 : (opts.temperature ?? this.config.sampleTemperature);
    const out = await this.nt.generate(
      ids,
      opts.tokens ?? this.config.sampleTokens,
      temperature,
      opts.greedy ? 1 : (opts.topK ?? this.config.sampleTopK),
      opts.seed ?? this.config.seed,
    );
    return tok.decode(out);
  }

  private async salad(step: number): Promise<SampleRecord> {
    const c = this.config;
    const seed = c.seed + step;
    // Every rank holds the same model: only rank 0 spends the time and writes the sample.
    const text = this.rank === 0 ? await this.sample(c.samplePrompt, { seed }) : "";
    const rec: SampleRecord = {
      step,
      prompt: c.samplePrompt,
      text,
      temperature: c.sampleTemperature,
      topK: c.sampleTopK,
      seed,
    };
    this.store.sample(rec);
    return rec;
  }

  /** Writes a checkpoint of the whole trainer state into the run and prunes old ones. */
  async save(): Promise<string> {
    this.check();
    if (this.training) throw new Error("save: the trainer is training; stop() and await train() first");
    return this.checkpoint();
  }

  private async checkpoint(): Promise<string> {
    const step = this.step;
    const path = this.store.checkpointPath(step);
    if (this.rank > 0) return path; // rank 0 writes the run's checkpoints
    // Every row up to this step (the held-back one included) is on stable storage before the
    // checkpoint exists: a resume continues after it, so rows missing now would be lost for good.
    this.flushPending();
    this.store.sync();
    // Pruned before the write too: K checkpoints never need room for more than K plus the
    // temporary file the native save writes, fsyncs and renames (then fsyncs the folder).
    this.store.pruneCheckpoints(this.config.keepCheckpoints);
    // "primal.extra": a copy of the run's config, checked like the rest of the metadata, that a
    // resume prefers over run.json. The knobs are the core's own metadata, stored once.
    const { knobs: _startedWith, ...config } = savedConfigInput(this.config as unknown as Record<string, unknown>);
    const extra = { runId: this.store.id, step, config, worldSize: this.worldSize };
    try {
      await this.nt.save(path, JSON.stringify(extra));
    } catch (e) {
      this.store.markFailed(e);
      throw e;
    }
    this.store.event("checkpoint", { step, path });
    this.store.pruneCheckpoints(this.config.keepCheckpoints);
    this.store.setStatus("running", step);
    return path;
  }

  // ---- introspection ------------------------------------------------------------------------

  layerNames(): string[] {
    return this.layerInfo.map((l) => l.name);
  }

  private cols(layer: LayerRef): number {
    const info = this.layerInfo;
    const l = typeof layer === "number" ? info[layer] : info.find((x) => x.name === layer);
    if (!l) {
      throw new Error(
        `unknown layer '${String(layer)}'; e.g. ${info
          .slice(0, 7)
          .map((x) => x.name)
          .join(", ")}`,
      );
    }
    return l.cols;
  }

  /** One row per BitLinear layer: Ghost Scale, dL/ds, flips, p, level occupancy, vote activity. */
  layers(): Table {
    this.check();
    const info = this.layerInfo;
    const now = this.nt.layerStats();
    // Occupancy, votes and p describe the state now; flips and dL/ds belong to the last step.
    const last = this.lastStepLayers;
    const cols: LayerColumns = { ...now };
    if (last) for (const k of STEP_LAYER_STATS) (cols as Record<string, ArrayLike<number>>)[k] = last[k];
    return layerTable(
      info.map((l) => l.name),
      cols,
      { gamma0: this.nt.gamma0() },
    );
  }

  /** The int8 vote buffer of a layer: one row per weight (row, col, value). */
  votes(layer: LayerRef, opts: BufferTableOptions = {}): Table {
    this.check();
    return weightTable(this.nt.votes(layer), this.cols(layer), opts);
  }

  /** The ternary codes (-2..2; -1/+1 are the ±b bridge levels) of a layer. */
  codes(layer: LayerRef, opts: BufferTableOptions = {}): Table {
    this.check();
    return weightTable(this.nt.codes(layer), this.cols(layer), opts);
  }

  /** The flip probability p of every weight of a layer under the current votes and knobs. */
  flipProbabilities(layer: LayerRef, opts: BufferTableOptions = {}): Table {
    this.check();
    return weightTable(this.nt.flipProbabilities(layer), this.cols(layer), opts);
  }

  /** Raw buffers for custom analysis. */
  buffers(layer: LayerRef): { votes: Int8Array; codes: Int8Array; p: Float32Array; weights: Float32Array } {
    this.check();
    return {
      votes: this.nt.votes(layer),
      codes: this.nt.codes(layer),
      p: this.nt.flipProbabilities(layer),
      weights: this.nt.weights(layer),
    };
  }

  /** One row per step: loss, lr, tokens/s, memory, validation loss where evaluated. */
  history(): Table {
    return withUnits(this.run.metrics, { timestamps: ["time"] });
  }

  /** Long format: one row per layer per step (scale, flips, occupancy...). */
  layerHistory(): Table {
    return this.run.layers;
  }

  memory(): NativeMemory {
    this.check();
    return this.nt.memory();
  }

  info(): ReturnType<NativeTrainer["info"]> {
    this.check();
    return this.nt.info();
  }

  /**
   * The raw core handle (accumulate/applyStep, logits, buffers), for PRIMAL's own tests and experts.
   * It is the internal binding: it trusts its caller, so values passed here skip the zod checks the
   * Trainer's methods make (the core still refuses what breaks its invariants). Use `set()` for knobs.
   */
  get native(): NativeTrainer {
    this.check();
    return this.nt;
  }

  /**
   * Writes the model at the current step as a GGUF file for llama.cpp (see docs/export.md); saves
   * a checkpoint first unless the latest one is at this step.
   */
  async exportGGUF(path: string, options: Omit<GGUFExportOptions, "out" | "step"> = {}): Promise<GGUFExportResult> {
    this.check();
    const latest = this.store.latestCheckpoint();
    const checkpoint = latest && latest.step === this.step ? latest.path : await this.save();
    const src = { checkpoint, tokenizer: this.config.data.tokenizer, runId: this.store.id };
    return exportCheckpointGGUF(
      this.config.name !== undefined ? { ...src, runName: this.config.name } : src,
      resolve(path),
      options,
    );
  }

  /** Flushes the run and frees the native memory. */
  dispose(): void {
    if (this.disposed) return;
    if (this.training) throw new Error("dispose: stop() and await train() first");
    const status = this.store.info.status;
    this.disposed = true;
    try {
      let failure: unknown;
      try {
        this.flushPending();
        this.store.flush();
        this.store.setStatus(status === "running" ? "finished" : status, this.currentStep);
      } catch (e) {
        failure = e; // a failed write has set the run "failed"
      }
      try {
        this.store.close();
      } catch (e) {
        if (failure === undefined) this.store.markFailed(e);
        failure ??= e;
      }
      if (failure !== undefined) throw failure;
    } finally {
      // Native memory is freed even when the run cannot be written any more (a full disk).
      this.nt.dispose();
      if (this.scratchHome) removeRankScratch(this.scratchHome);
    }
  }
}
