// The kernel's side of training and evaluation: live progress outputs for `await t.train(n)`
// and `await t.evaluate()`, and the interrupt. Everything goes through the library's host hooks
// (src/host.ts): each cell gets an AbortSignal that the kernel's interrupt aborts and that
// train() and evaluate() use when given none; observers draw the progress. A plain `node`
// process (CLI, tests) never installs them.
import { setHostHooks, type EvalObserver, type EvalProgress, type TrainObserver } from "../src/host.js";
import { escapeHtml } from "../src/plots/html.js";
import type { EvaluationResult, SampleRecord, StepMetrics, Trainer, TrainSummary } from "../src/trainer.js";
import { DisplayHandle, type MimeBundle } from "./display.js";

export { EvaluationInterrupted, Interrupted, TrainingInterrupted } from "../src/interrupted.js";

// ---------------------------------------------------------------- state

/** Calls in flight (train or evaluate), with a promise settled when each ends. */
const inflight = new Map<object, { trainer: Trainer; ended: Promise<void>; controller: AbortController }>();
/** The signal of the cell being executed; a fresh one for every cell. */
let controller = new AbortController();
/** Incremented by the launcher at the start of every cell execution. */
let execution = 0;
let liveEnabled = true;
/** Minimum ms between two updates of the live output. */
let liveIntervalMs = 250;

/** Values (summaries, evaluation results) a live output of this cell already shows. */
const shownValues = new WeakMap<object, number>();
/** This cell's live outputs, one per trainer and kind, so a loop updates one output in place. */
let cellOutputs = new Map<Trainer, { train?: LiveProgress; evaluate?: LiveEvaluation }>();

/** Called by the launcher when a cell starts executing. */
export function beginExecution(): void {
  execution++;
  controller = new AbortController();
  cellOutputs = new Map();
}

/** The signal of the running cell (aborted by an interrupt). */
export function cellSignal(): AbortSignal {
  return controller.signal;
}

/**
 * True (once) when `value` is a summary or evaluation result that a live output of this same
 * cell already shows, so the kernel does not print it a second time as the cell's value.
 */
export function takeShownSummary(value: unknown): boolean {
  if (value === null || typeof value !== "object") return false;
  const at = shownValues.get(value);
  if (at === undefined) return false;
  shownValues.delete(value);
  return at === execution;
}

/** Trainers that are training or evaluating right now. */
export function activeTrainers(): Trainer[] {
  return [...new Set([...inflight.values()].map((c) => c.trainer))];
}

/**
 * What a Jupyter interrupt does: aborts the running cell's signal, so training stops at the
 * next step boundary and an evaluation at the next window, and later `train()` calls in the
 * same cell throw TrainingInterrupted. Returns how many calls were running.
 */
export function interruptTraining(): number {
  controller.abort();
  // Also calls started by an earlier cell and still running (not awaited there).
  for (const c of inflight.values()) c.controller.abort();
  return inflight.size;
}

/** Resolves once no call is running (used at kernel shutdown and after an interrupt). */
export async function settleTraining(): Promise<void> {
  await Promise.allSettled([...inflight.values()].map((c) => c.ended));
}

export interface LiveTrainingOptions {
  /** Show the live progress output (default true). */
  enabled?: boolean;
  /** Minimum milliseconds between updates (default 250). */
  intervalMs?: number;
}

/** Turns the live progress output of `train()` and `evaluate()` on or off, or changes its update rate. */
export function liveTraining(opts: LiveTrainingOptions): void {
  if (opts.enabled !== undefined) liveEnabled = opts.enabled;
  if (opts.intervalMs !== undefined && Number.isFinite(opts.intervalMs) && opts.intervalMs >= 0)
    liveIntervalMs = opts.intervalMs;
}

// ---------------------------------------------------------------- formatting

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function rate(x: number): string {
  if (!Number.isFinite(x) || x <= 0) return "–";
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e4) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(0);
}

function lossText(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(4);
}

/** One line of sample text: whitespace collapsed, cut to a readable length. */
function sampleLine(s: SampleRecord | undefined, max = 160): string {
  if (!s) return "";
  const text = (s.prompt + s.text).replace(/\s+/g, " ").trim();
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

type Status = "running" | "finished" | "stopped" | "failed";

interface ProgressState {
  status: Status;
  runId: string;
  startStep: number;
  target: number;
  done: number;
  step: number;
  loss: number | null;
  tokensPerSec: number;
  elapsed: number;
  eta: number;
  sample: SampleRecord | undefined;
  runDir: string;
  /** Stopped by a kernel interrupt (rather than stop() from code). */
  interrupted?: boolean;
  error?: string;
  /** An evaluation inside training (eval.every), while it runs. */
  evaluating?: EvalProgress;
  /** train() calls this output shows (a loop in one cell updates one output). */
  calls?: number;
}

const STATUS_COLORS: Record<Status, string> = {
  running: "#1f6fb4",
  finished: "#2a9d3c",
  stopped: "#e8710a",
  failed: "#c8312f",
};

function headline(p: ProgressState): string {
  switch (p.status) {
    case "running":
      return `training step ${p.step} (${p.done}/${p.target})`;
    case "finished":
      return `trained ${p.done} step${p.done === 1 ? "" : "s"}: step ${p.startStep} → ${p.step}`;
    case "stopped":
      return `${p.interrupted ? "interrupted" : "stopped"} at step ${p.step} after ${p.done} of ${p.target} steps`;
    case "failed":
      return `training failed at step ${p.step} after ${p.done} of ${p.target} steps`;
  }
}

/** The live/summary output as a MIME bundle (HTML with a progress bar, plain text). */
export function progressBundle(p: ProgressState): MimeBundle {
  const frac = p.target > 0 ? Math.min(1, p.done / p.target) : 1;
  const timing =
    p.status === "running" ? `elapsed ${duration(p.elapsed)} · ETA ${duration(p.eta)}` : `${p.elapsed.toFixed(1)} s`;
  const fields =
    `loss ${lossText(p.loss)} · ${rate(p.tokensPerSec)} tok/s · ${timing}` +
    ((p.calls ?? 1) > 1 ? ` · ${p.calls} calls` : "") +
    (p.evaluating ? ` · ${evalLine(p.evaluating)}` : "");
  const sample = sampleLine(p.sample);
  const lines = [`${headline(p)} · ${fields}`];
  if (sample) lines.push(`sample @${p.sample?.step}: ${sample}`);
  if (p.error) lines.push(`error: ${p.error}`);
  if (p.status !== "running") lines.push(`run ${p.runId}: ${p.runDir}`);
  const color = STATUS_COLORS[p.status];
  const html =
    `<div class="primal-train" data-status="${p.status}" data-step="${p.step}" data-done="${p.done}" data-target="${p.target}" ` +
    `style="font-family:monospace;font-size:12px;line-height:1.5;max-width:900px">` +
    `<div><b style="color:${color}">${escapeHtml(headline(p))}</b> · run ${escapeHtml(p.runId)}</div>` +
    `<div style="background:#e8e8e8;height:6px;border-radius:3px;margin:3px 0;max-width:600px">` +
    `<div style="background:${color};height:6px;border-radius:3px;width:${(100 * frac).toFixed(1)}%"></div></div>` +
    `<div>${escapeHtml(fields)}</div>` +
    (sample
      ? `<div style="color:#555">sample @${p.sample?.step}: <span style="color:#222">${escapeHtml(sample)}</span></div>`
      : "") +
    (p.error ? `<div style="color:${STATUS_COLORS.failed}">${escapeHtml(p.error)}</div>` : "") +
    (p.status !== "running" ? `<div style="color:#888">${escapeHtml(p.runDir)}</div>` : "") +
    `</div>`;
  return { "text/html": html, "text/plain": lines.join("\n") };
}

function evalLine(p: EvalProgress): string {
  const pct = p.total > 0 ? Math.floor((100 * p.done) / p.total) : 100;
  return `evaluating ${p.split} ${pct}% (${p.done.toLocaleString("en-US")} of ${p.total.toLocaleString("en-US")} tokens)`;
}

/** Drives the live output of a trainer's `train()` calls in one cell. */
class LiveProgress {
  private readonly handle = new DisplayHandle();
  private t0 = performance.now();
  private lastDraw = 0;
  private emaTps = 0;
  private readonly state: ProgressState;
  /** Steps, target and seconds of earlier calls in this cell. */
  private before = { done: 0, target: 0, seconds: 0 };

  constructor(trainer: Trainer, n: number) {
    let step = 0;
    try {
      step = trainer.step;
    } catch {
      // Disposed trainer: train() will throw and fail() reports it.
    }
    this.state = {
      status: "running",
      runId: trainer.store.id,
      startStep: step,
      target: n,
      done: 0,
      step,
      loss: null,
      tokensPerSec: 0,
      elapsed: 0,
      eta: NaN,
      sample: undefined,
      runDir: trainer.store.dir,
      calls: 1,
    };
    this.draw(true);
  }

  /** One more train(n) of the same trainer in the same cell: the output continues. */
  again(n: number): void {
    const s = this.state;
    this.before = { done: s.done, target: s.target, seconds: s.elapsed };
    s.status = "running";
    s.target += n;
    s.calls = (s.calls ?? 1) + 1;
    this.t0 = performance.now();
    this.draw(true);
  }

  onStep(m: StepMetrics): void {
    const s = this.state;
    s.done++;
    s.step = m.step;
    s.loss = m.loss;
    this.emaTps = this.emaTps === 0 ? m.tokensPerSec : 0.8 * this.emaTps + 0.2 * m.tokensPerSec;
    s.tokensPerSec = this.emaTps;
    this.draw(false);
  }

  onSample(rec: SampleRecord): void {
    this.state.sample = rec;
    this.draw(true);
  }

  onEvaluation(p: EvalProgress): void {
    this.state.evaluating = p.done < p.total || p.splitIndex + 1 < p.splits ? p : undefined;
    this.draw(!this.state.evaluating);
  }

  finish(summary: TrainSummary): void {
    const s = this.state;
    s.status = summary.stopped ? "stopped" : "finished";
    s.interrupted = summary.stopped && controller.signal.aborted;
    s.evaluating = undefined;
    s.done = this.before.done + summary.steps;
    s.step = summary.step;
    s.loss = summary.loss ?? s.loss;
    s.tokensPerSec = summary.tokensPerSec;
    if (summary.lastSample) s.sample = summary.lastSample;
    s.elapsed = this.before.seconds + summary.seconds;
    this.draw(true);
  }

  fail(err: unknown): void {
    this.state.status = "failed";
    this.state.evaluating = undefined;
    this.state.error = err instanceof Error ? err.message : String(err);
    this.draw(true);
  }

  private draw(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.lastDraw < liveIntervalMs) return;
    this.lastDraw = now;
    const s = this.state;
    if (s.status === "running") {
      s.elapsed = this.before.seconds + (now - this.t0) / 1000;
      const doneNow = s.done - this.before.done;
      s.eta = doneNow > 0 ? ((now - this.t0) / 1000 / doneNow) * (s.target - s.done) : NaN;
    }
    this.handle.update(progressBundle(s));
  }
}

type EvalStatus = "running" | "finished" | "interrupted" | "failed";

/** The live output of `evaluate()`: a bar over all splits, then the metrics. */
export function evaluationBundle(p: {
  status: EvalStatus;
  progress?: EvalProgress;
  result?: EvaluationResult;
  seconds: number;
  error?: string;
}): MimeBundle {
  const color =
    p.status === "running"
      ? STATUS_COLORS.running
      : p.status === "finished"
        ? STATUS_COLORS.finished
        : p.status === "interrupted"
          ? STATUS_COLORS.stopped
          : STATUS_COLORS.failed;
  const g = p.progress;
  const frac = !g ? 0 : (g.splitIndex + (g.total > 0 ? g.done / g.total : 1)) / Math.max(1, g.splits);
  let line: string;
  if (p.status === "running") line = g ? evalLine(g) : "evaluating";
  else if (p.status === "finished") {
    const r = p.result;
    const parts = [
      r?.validation
        ? `corpus/validation loss ${r.validation.loss.toFixed(4)} · ppl ${r.validation.ppl.toFixed(2)} · bpb ${r.validation.bpb.toFixed(4)} (${r.validation.tokens.toLocaleString("en-US")} tokens)`
        : "",
      r?.wikitext
        ? `wikitext-2 loss ${r.wikitext.loss.toFixed(4)} · ppl ${r.wikitext.ppl.toFixed(2)} · bpb ${r.wikitext.bpb.toFixed(4)} (${r.wikitext.tokens.toLocaleString("en-US")} tokens)`
        : "",
    ].filter((x) => x);
    line = `evaluated at step ${r?.step ?? "?"}: ${parts.join(" | ") || "no evaluation data"}`;
  } else if (p.status === "interrupted")
    line = `evaluation interrupted${g ? ` in ${g.split} at ${g.done.toLocaleString("en-US")} of ${g.total.toLocaleString("en-US")} tokens` : ""}`;
  else line = `evaluation failed: ${p.error ?? "unknown error"}`;
  const text = `${line} · ${p.seconds.toFixed(1)} s`;
  const bar =
    p.status === "running"
      ? `<div style="background:#e8e8e8;height:6px;border-radius:3px;margin:3px 0;max-width:600px">` +
        `<div style="background:${color};height:6px;border-radius:3px;width:${(100 * Math.min(1, frac)).toFixed(1)}%"></div></div>`
      : "";
  const html =
    `<div class="primal-eval" data-status="${p.status}" style="font-family:monospace;font-size:12px;line-height:1.5;max-width:900px">` +
    `<div style="color:${color}">${escapeHtml(text)}</div>${bar}</div>`;
  return { "text/html": html, "text/plain": text };
}

class LiveEvaluation {
  private readonly handle = new DisplayHandle();
  private t0 = performance.now();
  private lastDraw = 0;
  private progress: EvalProgress | undefined;

  again(): void {
    this.t0 = performance.now();
    this.progress = undefined;
    this.draw("running", true);
  }

  onProgress(p: EvalProgress): void {
    this.progress = p;
    this.draw("running", false);
  }

  finish(result: EvaluationResult): void {
    this.draw("finished", true, result);
  }

  fail(err: unknown): void {
    const interrupted = err instanceof Error && err.name === "EvaluationInterrupted";
    this.draw(
      interrupted ? "interrupted" : "failed",
      true,
      undefined,
      err instanceof Error ? err.message : String(err),
    );
  }

  draw(status: EvalStatus, force: boolean, result?: EvaluationResult, error?: string): void {
    const now = performance.now();
    if (!force && now - this.lastDraw < liveIntervalMs) return;
    this.lastDraw = now;
    this.handle.update(
      evaluationBundle({
        status,
        seconds: (now - this.t0) / 1000,
        ...(this.progress ? { progress: this.progress } : {}),
        ...(result ? { result } : {}),
        ...(error !== undefined ? { error } : {}),
      }),
    );
  }
}

// ---------------------------------------------------------------- the hooks

/** Registers a running call until it ends. */
function track(trainer: Trainer): { end(): void } {
  const key = {};
  let end!: () => void;
  const ended = new Promise<void>((r) => (end = r));
  inflight.set(key, { trainer, ended, controller });
  return {
    end() {
      inflight.delete(key);
      end();
    },
  };
}

function trainObserver(trainer: Trainer, n: number): TrainObserver {
  const call = track(trainer);
  let live: LiveProgress | undefined;
  if (liveEnabled) {
    const outputs = cellOutputs.get(trainer) ?? {};
    cellOutputs.set(trainer, outputs);
    if (outputs.train) outputs.train.again(n);
    else outputs.train = new LiveProgress(trainer, n);
    live = outputs.train;
  }
  return {
    step: (m) => live?.onStep(m),
    sample: (s) => live?.onSample(s),
    evaluation: (p) => live?.onEvaluation(p),
    done(summary) {
      call.end();
      if (live) {
        live.finish(summary);
        shownValues.set(summary, execution);
      }
    },
    failed(e) {
      call.end();
      live?.fail(e);
    },
  };
}

function evalObserver(trainer: Trainer): EvalObserver {
  const call = track(trainer);
  let live: LiveEvaluation | undefined;
  if (liveEnabled) {
    const outputs = cellOutputs.get(trainer) ?? {};
    cellOutputs.set(trainer, outputs);
    if (outputs.evaluate) outputs.evaluate.again();
    else {
      outputs.evaluate = new LiveEvaluation();
      outputs.evaluate.draw("running", true);
    }
    live = outputs.evaluate;
  }
  return {
    progress: (p) => live?.onProgress(p),
    done(result) {
      call.end();
      if (live) {
        live.finish(result);
        shownValues.set(result, execution);
      }
    },
    failed(e) {
      call.end();
      live?.fail(e);
    },
  };
}

/**
 * Installs the kernel's host hooks: the cell signal, live outputs, and a notice when a call
 * waits for an interrupted one. `notice` shows a one-line message in the cell.
 */
export function installTrainingHooks(notice: (text: string) => void = (t) => console.log(t)): void {
  setHostHooks({
    signal: cellSignal,
    train: trainObserver,
    evaluate: (trainer) => evalObserver(trainer),
    waiting: notice,
  });
}
