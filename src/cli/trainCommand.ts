// `primal train` and `primal resume`: the main job. Trains, evaluates, prints a summary and,
// with --json, one final JSON line (the contract in docs/design.md, "Interfaces").
import { Trainer, type TrainSummary } from "../trainer.js";
import type { TrainerConfigInput } from "../config.js";
import { isInterrupted } from "../interrupted.js";
import { makeEvalProgress, makeProgress } from "./progress.js";
import { intFlag, numFlag } from "./numberFlags.js";

export interface TrainFlags {
  preset: string;
  quant: string;
  steps: string;
  device: string;
  json?: boolean;
  batch?: string;
  accum?: string;
  seed?: string;
  lr?: string;
  bridge?: string;
  flipRate?: string;
  data?: string;
  tokenizer?: string;
  wikitext?: string;
  evalTokens?: string;
  evalEvery?: string;
  sampleEvery?: string;
  checkpointEvery?: string;
  name?: string;
  home?: string;
  threads?: string;
  microBatch?: string;
  recompute?: string;
  memoryBudget?: string;
  distributed?: string;
  ranks?: string;
}

export function configFromFlags(f: TrainFlags): TrainerConfigInput {
  const knobs: Record<string, number | null> = {};
  const lr = numFlag("lr", f.lr);
  if (lr !== undefined) knobs.lr = lr;
  if (f.bridge !== undefined)
    knobs.bridge = f.bridge === "null" || f.bridge === "off" ? null : numFlag("bridge", f.bridge)!;
  const fr = numFlag("flip-rate", f.flipRate);
  if (fr !== undefined) knobs.flipRate = fr;
  const steps = intFlag("steps", f.steps)!;
  const cfg: Record<string, unknown> = {
    preset: f.preset,
    quant: f.quant,
    steps,
    device: f.device,
    knobs,
    data: {
      corpus: f.data ?? "sotu",
      ...(f.tokenizer ? { tokenizer: f.tokenizer } : {}),
      ...(f.wikitext ? { wikitextDir: f.wikitext } : {}),
    },
    eval: {
      every: intFlag("eval-every", f.evalEvery) ?? 0,
      ...(f.evalTokens !== undefined ? { maxTokens: intFlag("eval-tokens", f.evalTokens) } : {}),
    },
  };
  const opt: [string, number | undefined][] = [
    ["batch", intFlag("batch", f.batch)],
    ["accum", intFlag("accum", f.accum)],
    ["seed", intFlag("seed", f.seed)],
    ["sampleEvery", intFlag("sample-every", f.sampleEvery)],
    ["checkpointEvery", intFlag("checkpoint-every", f.checkpointEvery)],
    ["threads", intFlag("threads", f.threads)],
  ];
  for (const [k, v] of opt) if (v !== undefined) cfg[k] = v;
  if (f.microBatch !== undefined)
    cfg.microBatch = f.microBatch === "auto" ? "auto" : intFlag("micro-batch", f.microBatch);
  if (f.recompute !== undefined) cfg.recompute = f.recompute;
  if (f.distributed !== undefined) cfg.distributed = f.distributed;
  // A plain number is bytes; "10GiB" and friends are parsed by the config.
  if (f.memoryBudget !== undefined)
    cfg.memoryBudget = /^\d+$/.test(f.memoryBudget) ? Number(f.memoryBudget) : f.memoryBudget;
  if (steps < 30) cfg.warmup = Math.max(0, Math.floor(steps / 10));
  if (f.name) cfg.name = f.name;
  if (f.home) cfg.home = f.home;
  return cfg as TrainerConfigInput;
}

/**
/**
 * Ctrl-C or SIGTERM (a scheduler's stop) for the whole command: the first aborts the signal
 * (training stops at the next step boundary with a checkpoint and the run ends "stopped";
 * evaluation stops at the next window), the second exits at once.
 */
function interruptSignal(): AbortSignal {
  const ac = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(signal === "SIGINT" ? 130 : 143);
    const what = signal === "SIGINT" ? "interrupt" : signal;
    process.stderr.write(`\n${what}: stopping at the next step boundary or evaluation window (again to abort)\n`);
    ac.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return ac.signal;
}
let commandSignal: AbortSignal | undefined;

export interface RunTrainingOptions {
  /**
   * Evaluate after the last step (default true, what `train` does). `resume` evaluates only
   * when asked (--eval): a resume for a few steps should take a few steps, not an evaluation.
   */
  evaluate?: boolean;
}

/** Runs n steps with a progress display, then (unless told not to) evaluates before the last checkpoint. */
export async function runTraining(
  trainer: Trainer,
  steps: number,
  json: boolean,
  opts: RunTrainingOptions = {},
): Promise<TrainSummary> {
  // Data parallel: rank 0 speaks for the run; the other ranks train silently.
  const progress = makeProgress(steps, trainer.rank === 0);
  commandSignal ??= interruptSignal();
  let evalProgress: ReturnType<typeof makeEvalProgress> | undefined;
  try {
    return await trainer.train(steps, {
      signal: commandSignal,
      evaluateAtEnd: opts.evaluate !== false,
      onEvalProgress: (p) => {
        if (!evalProgress) {
          progress.stop();
          announceEvaluation(trainer, json);
          evalProgress = makeEvalProgress(!json && trainer.rank === 0);
        }
        evalProgress.update(p);
      },
      onStep: (m) => progress.update(m),
      onSample: (s) => {
        if (!json && trainer.rank === 0)
          process.stderr.write(`\n[step ${s.step}] ${JSON.stringify(s.prompt + s.text)}\n`);
      },
    });
  } finally {
    progress.stop();
    evalProgress?.stop();
  }
}

function announceEvaluation(trainer: Trainer, json: boolean): void {
  if (json || trainer.rank > 0) return;
  const cap = trainer.config.eval.maxTokens;
  process.stderr.write(
    cap > 0
      ? `evaluating on the first ${cap.toLocaleString("en-US")} tokens of each split (--eval-tokens 0 for all)\n`
      : "evaluating on the whole of each split\n",
  );
}

/** The final evaluation when training did not make it (e.g. 0 steps); null when Ctrl-C cancelled it. */
async function finalEvaluation(
  trainer: Trainer,
  json: boolean,
): Promise<Awaited<ReturnType<Trainer["evaluate"]>> | null> {
  if (commandSignal?.aborted) {
    if (!json) process.stderr.write("evaluation interrupted: no validation metrics\n");
    return null;
  }
  announceEvaluation(trainer, json);
  const progress = makeEvalProgress(!json && trainer.rank === 0);
  try {
    return await trainer.evaluate({
      ...(commandSignal ? { signal: commandSignal } : {}),
      onProgress: (p) => progress.update(p),
    });
  } catch (e) {
    if (!isInterrupted(e)) throw e;
    process.stderr.write("evaluation interrupted: no validation metrics\n");
    return null;
  } finally {
    progress.stop();
  }
}

export async function finish(
  trainer: Trainer,
  summary: TrainSummary,
  json: boolean,
  opts: RunTrainingOptions = {},
): Promise<void> {
  const evaluate = opts.evaluate !== false;
  const ev = summary.eval ?? (evaluate ? await finalEvaluation(trainer, json) : null) ?? { step: trainer.step };
  const primary = ev.wikitext ?? ev.validation;
  const mem = trainer.memory();
  const result = {
    tokensPerSec: Math.round(summary.tokensPerSec),
    medianTokensPerSec: Math.round(summary.medianTokensPerSec),
    trainLoss: summary.loss,
    valLoss: primary?.loss ?? null,
    valPpl: primary?.ppl ?? null,
    valBpb: primary?.bpb ?? null,
    valSet: ev.wikitext ? "wikitext-2/valid" : ev.validation ? "corpus/validation" : null,
    corpusValLoss: ev.validation?.loss ?? null,
    corpusValBpb: ev.validation?.bpb ?? null,
    evalTokens: (ev.validation?.tokens ?? 0) + (ev.wikitext?.tokens ?? 0),
    peakMemoryBytes: mem.devicePeak,
    plannedMemoryBytes: mem.planned,
    microBatch: trainer.plan.microBatch,
    recompute: trainer.plan.recompute,
    device: trainer.device,
    worldSize: trainer.worldSize,
    distributed: trainer.config.distributed ?? null,
    quant: trainer.config.quant,
    preset: trainer.config.preset,
    steps: summary.steps,
    step: summary.step,
    stopped: summary.stopped,
    seconds: Number(summary.seconds.toFixed(2)),
    runDir: trainer.runDir,
  };
  const quiet = trainer.rank > 0;
  const sample = quiet ? "" : await trainer.sample(trainer.config.samplePrompt, { seed: trainer.config.seed });
  trainer.dispose();
  if (quiet) return;
  if (json) {
    process.stdout.write(JSON.stringify(result) + "\n");
    return;
  }
  const fmt = (x: number | null, d = 4) => (x === null ? "n/a" : x.toFixed(d));
  process.stdout.write(
    [
      "",
      `PRIMAL ${result.preset} / ${result.quant} on ${result.device}`,
      `  steps        ${result.steps} (now at step ${result.step})${result.stopped ? ", stopped early" : ""} in ${result.seconds}s`,
      `  throughput   ${result.medianTokensPerSec.toLocaleString("en-US")} tokens/s at the median step (as primal_bench); ` +
        `${result.tokensPerSec.toLocaleString("en-US")} over all ${result.steps} steps, the first included`,
      `  train loss   ${fmt(result.trainLoss)} nats/token`,
      evaluate || primary
        ? `  ${(result.valSet ?? "validation").padEnd(12)} loss ${fmt(result.valLoss)}  ppl ${fmt(result.valPpl, 2)}  bpb ${fmt(result.valBpb)}` +
          (primary ? `  (${primary.tokens.toLocaleString("en-US")} tokens)` : "")
        : "  validation   not evaluated (--eval evaluates at the end)",
      ev.wikitext || !evaluate ? "" : "  (set PRIMAL_WIKITEXT_DIR or --wikitext DIR to evaluate on WikiText-2)",
      `  peak memory  ${(result.peakMemoryBytes / 2 ** 20).toFixed(1)} MiB`,
      `  sample       ${JSON.stringify(trainer.config.samplePrompt + sample)}`,
      `  run          ${result.runDir}`,
      `               figures: npx primal report ${result.runDir}`,
      "",
    ]
      .filter((l) => l !== "")
      .join("\n") + "\n",
  );
}
