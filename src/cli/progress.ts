// Training progress for the terminal: a cli-progress bar on a TTY, plain periodic lines otherwise
// (logs and CI stay readable).
import cliProgress from "cli-progress";
import type { EvalProgress } from "../host.js";
import type { StepMetrics } from "../trainer.js";

export interface Progress {
  update(m: StepMetrics): void;
  stop(): void;
}

export function makeProgress(total: number, enabled: boolean): Progress {
  if (!enabled) return { update() {}, stop() {} };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: "train |{bar}| {value}/{total} steps | loss {loss} | {tps} tok/s | ETA {eta_formatted}",
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { loss: "-", tps: "-" });
    let n = 0;
    return {
      update(m) {
        n++;
        bar.update(n, { loss: m.loss.toFixed(4), tps: Math.round(m.tokensPerSec).toLocaleString("en-US") });
      },
      stop() {
        bar.stop();
      },
    };
  }
  let n = 0;
  const every = Math.max(1, Math.round(total / 10));
  return {
    update(m) {
      n++;
      if (n % every === 0 || n === total)
        process.stderr.write(
          `step ${m.step} (${n}/${total}) loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} ${Math.round(m.tokensPerSec)} tok/s\n`,
        );
    },
    stop() {},
  };
}

/** Evaluation progress: a bar over all splits on a TTY, a line per split otherwise. */
export interface EvalProgressDisplay {
  update(p: EvalProgress): void;
  stop(): void;
}

export function makeEvalProgress(enabled: boolean): EvalProgressDisplay {
  if (!enabled) return { update() {}, stop() {} };
  const t0 = performance.now();
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      { stream: process.stderr, format: "eval  |{bar}| {split} {value}/{total} tokens | {secs} s", hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    let current = "";
    return {
      update(p) {
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        if (p.split !== current) {
          if (current) bar.stop();
          current = p.split;
          bar.start(p.total, p.done, { split: p.split, secs });
        } else bar.update(p.done, { secs });
      },
      stop() {
        if (current) bar.stop();
      },
    };
  }
  const reported = new Set<string>();
  return {
    update(p) {
      if (p.done === 0 && !reported.has(`${p.split}:start`)) {
        reported.add(`${p.split}:start`);
        process.stderr.write(`evaluating ${p.split}: ${p.total.toLocaleString("en-US")} tokens\n`);
      }
      if (p.done === p.total && !reported.has(`${p.split}:end`)) {
        reported.add(`${p.split}:end`);
        process.stderr.write(`evaluated ${p.split} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
      }
    },
    stop() {},
  };
}

/** Progress over files being written: a bar on a TTY, else each path on stdout as it is written. */
export interface FileProgress {
  /** True when a bar is drawn (the caller then lists the files at the end). */
  readonly bar: boolean;
  update(done: number, total: number, path: string): void;
  stop(): void;
}

export function makeFileProgress(label: string, firstNote?: string): FileProgress {
  if (!process.stderr.isTTY)
    return {
      bar: false,
      update: (_d, _t, path) => void process.stdout.write(`${path}\n`),
      stop() {},
    };
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} |{bar}| {value}/{total} files | {file}`, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  // E.g. the first file waits for the browser to start: say so at once.
  if (firstNote) process.stderr.write(`${label}: ${firstNote}\n`);
  return {
    bar: true,
    update(done, total, path) {
      const file = path.split(/[\\/]/).pop() ?? path;
      if (!started) {
        started = true;
        bar.start(total, done, { file });
      } else bar.update(done, { file });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
