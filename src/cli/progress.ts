// Training progress for the terminal: a cli-progress bar on a TTY, plain periodic lines otherwise
// (logs and CI stay readable).
import cliProgress from "cli-progress";
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
