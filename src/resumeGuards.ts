// What a resume may take from a run folder that came from elsewhere, and what it must not change
// silently: the corpus file it reads (run.json may name any file of the machine) and the number of
// data-parallel ranks (which sets how many windows a step trains on).
import { realpathSync } from "node:fs";
import { isAbsolute, relative, resolve, sep } from "node:path";
import type { CheckpointExtra } from "./resumeCheckpoint.js";

/** Corpora that ship with the package; any other `data.corpus` is a path. */
export const EMBEDDED_CORPORA: readonly string[] = ["sotu"];

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

/**
 * The corpus a resume reads. `given` (the caller's `--data`) wins. Otherwise run.json's value is
 * used only when it is an embedded corpus or a path that lies inside the run folder (relative
 * paths are taken from the run folder; links are resolved before the check).
 */
export function resumeCorpus(runDir: string, saved: string, given: string | undefined): string {
  if (given !== undefined) return given;
  if (EMBEDDED_CORPORA.includes(saved)) return saved;
  const candidate = resolve(runDir, saved);
  let real: string;
  let root: string;
  try {
    real = realpathSync(candidate);
    root = realpathSync(runDir);
  } catch {
    real = "";
    root = "";
  }
  if (real !== "" && inside(root, real)) return real;
  throw new Error(
    `resume: run.json names the corpus '${saved}', which is not an embedded corpus (${EMBEDDED_CORPORA.join(", ")}) ` +
      `and not a file inside the run folder; a run folder may not make a resume read other files. If that is ` +
      `the training text, pass it explicitly: primal resume ${runDir} --data ${JSON.stringify(saved)} ` +
      `(Trainer.resume(run, { corpus }))`,
  );
}

/** The world size the checkpoint was trained with: its metadata, else the saved config, else 1. */
export function savedWorldSize(extra: CheckpointExtra, savedConfig: Record<string, unknown>): number {
  const ok = (w: unknown): w is number => typeof w === "number" && Number.isSafeInteger(w) && w >= 1;
  if (ok(extra.worldSize)) return extra.worldSize;
  const w = savedConfig["worldSize"];
  return ok(w) ? w : 1;
}

/**
 * Refuses a resume on another number of ranks unless `allowed`: with batch and accum per rank, the
 * windows of a step scale with the ranks, so half the ranks would silently train half the tokens
 * per step.
 */
export function checkWorldSize(
  saved: number,
  now: number,
  windowsPerRank: number,
  allowed: boolean,
  checkpoint: string,
): void {
  if (saved === now || allowed) return;
  const per = (r: number) => `${r} rank${r === 1 ? "" : "s"} x ${windowsPerRank} = ${r * windowsPerRank} windows`;
  throw new Error(
    `resume: checkpoint '${checkpoint}' was trained on ${per(saved)} per step; this resume has ${per(now)} per step, ` +
      `so each step would train on ${now < saved ? "fewer" : "more"} tokens. Resume with ${saved} rank${saved === 1 ? "" : "s"}, ` +
      `or pass --change-world-size (Trainer.resume(run, { changeWorldSize: true })) to continue with ${now * windowsPerRank} windows per step.`,
  );
}
