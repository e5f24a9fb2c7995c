// What an aborted long call throws. An interrupt is an expected outcome, not a failure: hosts
// (the notebook kernel, the CLI) show it as a one-line notice rather than a stack trace.

export class Interrupted extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Interrupted";
  }
}

/** Thrown by `train()` when its signal was aborted before it started (e.g. a loop after an interrupt). */
export class TrainingInterrupted extends Interrupted {
  constructor(message: string) {
    super(message);
    this.name = "TrainingInterrupted";
  }
}

/** Thrown by `evaluate()` when its signal aborts it; the native evaluation stops at the next window. */
export class EvaluationInterrupted extends Interrupted {
  constructor(message: string) {
    super(message);
    this.name = "EvaluationInterrupted";
  }
}

export function isInterrupted(e: unknown): boolean {
  return e instanceof Interrupted || (e instanceof Error && /^(Training|Evaluation)?Interrupted$/.test(e.name));
}
