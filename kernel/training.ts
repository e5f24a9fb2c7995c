// Kernel-side training hooks: a live progress output for `await t.train(n)`, a registry of the
// trainers that are training, and interrupt handling. Installed by the kernel launcher only;
// a plain `node` process (CLI, tests) keeps the Trainer untouched.
//
// Why patch Trainer.prototype.train rather than change the facade: tslab abandons a cell's
// await on SIGINT but cannot stop the native worker, so the kernel has to know which trainers
// run and stop them itself; and the progress output belongs to the notebook, not the library.
import { Trainer, type SampleRecord, type StepMetrics, type TrainOptions, type TrainSummary } from "../src/trainer.js";
import { DisplayHandle, type MimeBundle } from "./display.js";

/** Thrown by `train()` when an interrupt already stopped training in the same cell. */
export class TrainingInterrupted extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TrainingInterrupted";
  }
}

// ---------------------------------------------------------------- state

/** Trainers currently in `train()`, with the promise of that call. */
const inflight = new Map<Trainer, Promise<TrainSummary>>();
/** Incremented by the launcher at the start of every cell execution. */
let execution = 0;
/** The execution during which the last interrupt stopped training (-1: none). */
let interruptedExecution = -1;
let liveEnabled = true;
/** Minimum ms between two updates of the live output. */
let liveIntervalMs = 250;

/** Summaries the live output already showed, with the execution that returned them. */
const shownSummaries = new WeakMap<object, number>();

/** Called by the launcher when a cell starts executing. */
export function beginExecution(): void {
  execution++;
}

/**
 * True (once) when `value` is the summary a live output of this same cell already shows, so
 * the kernel does not print it a second time as the cell's value. Later cells print it.
 */
export function takeShownSummary(value: unknown): boolean {
  if (value === null || typeof value !== "object") return false;
  const at = shownSummaries.get(value);
  if (at === undefined) return false;
  shownSummaries.delete(value);
  return at === execution;
}

/** Trainers that are training right now. */
export function activeTrainers(): Trainer[] {
  return [...inflight.keys()];
}

/**
 * Stops every training trainer at its next step boundary (what a Jupyter interrupt does).
 * Later `train()` calls in the same cell then throw TrainingInterrupted, so a loop over
 * `train()` ends like any interrupted cell. Returns how many trainers were asked to stop.
 */
export function interruptTraining(): number {
  const ts = activeTrainers();
  if (ts.length === 0) return 0;
  interruptedExecution = execution;
  for (const t of ts) {
    try {
      t.stop();
    } catch {
      // A disposed or failing trainer is no reason to keep the others running.
    }
  }
  return ts.length;
}

/** Resolves once no trainer is training (used at kernel shutdown). */
export async function settleTraining(): Promise<void> {
  await Promise.allSettled([...inflight.values()]);
}

export interface LiveTrainingOptions {
  /** Show the live progress output (default true). */
  enabled?: boolean;
  /** Minimum milliseconds between updates (default 250). */
  intervalMs?: number;
}

/** Turns the live progress output of `train()` on or off, or changes its update rate. */
export function liveTraining(opts: LiveTrainingOptions): void {
  if (opts.enabled !== undefined) liveEnabled = opts.enabled;
  if (opts.intervalMs !== undefined && Number.isFinite(opts.intervalMs) && opts.intervalMs >= 0) liveIntervalMs = opts.intervalMs;
}

// ---------------------------------------------------------------- formatting

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

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
    p.status === "running"
      ? `elapsed ${duration(p.elapsed)} · ETA ${duration(p.eta)}`
      : `${p.elapsed.toFixed(1)} s`;
  const fields = `loss ${lossText(p.loss)} · ${rate(p.tokensPerSec)} tok/s · ${timing}`;
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

/** Drives one live output for one `train()` call. */
class LiveProgress {
  private readonly handle = new DisplayHandle();
  private readonly t0 = performance.now();
  private lastDraw = 0;
  private emaTps = 0;
  private readonly state: ProgressState;

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
    };
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

  finish(summary: TrainSummary): void {
    const s = this.state;
    s.status = summary.stopped ? "stopped" : "finished";
    s.interrupted = summary.stopped && interruptedExecution === execution;
    s.done = summary.steps;
    s.step = summary.step;
    s.loss = summary.loss ?? s.loss;
    s.tokensPerSec = summary.tokensPerSec;
    if (summary.lastSample) s.sample = summary.lastSample;
    s.elapsed = summary.seconds;
    this.draw(true);
  }

  fail(err: unknown): void {
    this.state.status = "failed";
    this.state.error = err instanceof Error ? err.message : String(err);
    this.draw(true);
  }

  private draw(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.lastDraw < liveIntervalMs) return;
    this.lastDraw = now;
    const s = this.state;
    if (s.status === "running") {
      s.elapsed = (now - this.t0) / 1000;
      s.eta = s.done > 0 ? (s.elapsed / s.done) * (s.target - s.done) : NaN;
    }
    this.handle.update(progressBundle(s));
  }
}

// ---------------------------------------------------------------- the hook

const PATCHED = Symbol.for("primal.kernel.trainPatched");

type TrainFn = (this: Trainer, n: number, opts?: TrainOptions) => Promise<TrainSummary>;

/**
 * Wraps Trainer.prototype.train for the kernel: live output, registry of training trainers,
 * and waiting for a previous call that an interrupt abandoned. Idempotent.
 */
export function installTrainingHooks(): void {
  const proto = Trainer.prototype as unknown as { train: TrainFn; [PATCHED]?: TrainFn };
  if (proto[PATCHED]) return;
  const original = proto.train;
  proto[PATCHED] = original;
  proto.train = async function train(this: Trainer, n: number, opts: TrainOptions = {}): Promise<TrainSummary> {
    // A cell abandoned by a second interrupt may still be finishing its step: wait for it
    // instead of failing with "already training".
    const previous = inflight.get(this);
    if (previous) await previous.catch(() => undefined);
    if (interruptedExecution === execution) {
      throw new TrainingInterrupted(`training was interrupted in this cell (trainer at step ${this.step}); run the cell again to continue`);
    }
    const live = liveEnabled ? new LiveProgress(this, n) : null;
    const promise = original.call(this, n, {
      ...opts,
      onStep: (m) => {
        live?.onStep(m);
        opts.onStep?.(m);
      },
      onSample: (s) => {
        live?.onSample(s);
        opts.onSample?.(s);
      },
    });
    inflight.set(this, promise);
    try {
      const summary = await promise;
      if (live) {
        live.finish(summary);
        shownSummaries.set(summary, execution);
      }
      return summary;
    } catch (e) {
      live?.fail(e);
      throw e;
    } finally {
      if (inflight.get(this) === promise) inflight.delete(this);
    }
  };
}

/** Restores the original Trainer.prototype.train (tests). */
export function uninstallTrainingHooks(): void {
  const proto = Trainer.prototype as unknown as { train: TrainFn; [PATCHED]?: TrainFn };
  const original = proto[PATCHED];
  if (!original) return;
  proto.train = original;
  delete proto[PATCHED];
}
