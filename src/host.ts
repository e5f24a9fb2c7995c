// Hooks for a host that runs library calls on a user's behalf (the Jupyter kernel): a default
// abort signal for calls given none (its interrupt) and observers of long calls (its live
// progress outputs). The library calls them; it never needs to know which host it runs in.
// Registered on globalThis so that every copy of the library in a process sees the same host.
import type { EvaluationResult, SampleRecord, StepMetrics, Trainer, TrainSummary } from "./trainer.js";

export interface TrainObserver {
  step?(m: StepMetrics): void;
  sample?(s: SampleRecord): void;
  /** Progress of an evaluation that runs inside training (eval.every). */
  evaluation?(p: EvalProgress): void;
  done?(summary: TrainSummary): void;
  failed?(error: unknown): void;
}

export interface EvalProgress {
  /** The split being scored ("corpus/validation", "wikitext-2/valid"). */
  split: string;
  /** Tokens of this split scored so far, and in all. */
  done: number;
  total: number;
  /** Splits finished before this one, and splits in all. */
  splitIndex: number;
  splits: number;
}

export interface EvalObserver {
  progress?(p: EvalProgress): void;
  done?(result: EvaluationResult): void;
  failed?(error: unknown): void;
}

export interface HostHooks {
  /** The signal of calls that pass none (the kernel: aborted by an interrupt of the running cell). */
  signal?(): AbortSignal | undefined;
  /** An observer for one `train(n)` call. */
  train?(trainer: Trainer, n: number): TrainObserver | undefined;
  /** An observer for one `evaluate()` call (not called for evaluations inside training). */
  evaluate?(trainer: Trainer, tokens: number): EvalObserver | undefined;
  /** A call has to wait for an earlier one to finish (e.g. a train() abandoned by an interrupt). */
  waiting?(message: string): void;
}

const KEY = Symbol.for("primal.hostHooks");
type Registry = { [KEY]?: HostHooks };

/** Installs (or with null removes) the host's hooks. */
export function setHostHooks(hooks: HostHooks | null): void {
  const g = globalThis as Registry;
  if (hooks) g[KEY] = hooks;
  else delete g[KEY];
}

export function hostHooks(): HostHooks {
  return (globalThis as Registry)[KEY] ?? {};
}
