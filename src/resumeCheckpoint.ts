// Which checkpoint a resume starts from, and what its "primal.extra" metadata may say. Kept out of
// the Trainer facade: these are the rules that keep a run's history whole when it is resumed.
import { lstatSync } from "node:fs";
import { basename } from "node:path";
import { listCheckpoints } from "./tracking/files.js";

export interface ResumeChoice {
  checkpoint: string;
  /** The "primal.extra" JSON text the native loader returned. */
  extra: string;
  /** Newer checkpoints that failed to load (skipped), newest first. */
  damaged: { path: string; error: string }[];
}

const stepOf = (path: string): number | null => {
  const m = /^step-(\d+)\.safetensors$/.exec(basename(path));
  return m ? Number(m[1]) : null;
};

/**
 * `explicit` null: the newest checkpoint of the run that loads (damaged newer ones are reported
 * in `damaged`). Otherwise that file, which must be a regular file; when the run has newer
 * checkpoints, resuming from it starts a branch and needs `fork`.
 */
export async function chooseCheckpoint(
  runDir: string,
  explicit: string | null,
  fork: boolean,
  load: (path: string) => Promise<string>,
): Promise<ResumeChoice> {
  const all = listCheckpoints(runDir);
  if (explicit !== null) {
    // Regular files only: a FIFO would block the loader forever, a link could point anywhere.
    if (!lstatSync(explicit).isFile()) throw new Error(`resume: '${explicit}' is not a regular file`);
    const step = stepOf(explicit);
    if (step === null) throw new Error(`resume: '${basename(explicit)}' is not named step-N.safetensors`);
    const later = all.filter((c) => c.step > step);
    if (later.length > 0 && !fork) {
      throw new Error(
        `resume: step-${step} is older than the run's newest checkpoint step-${later[later.length - 1]!.step}; ` +
          `resuming from it starts a branch. Pass --fork (Trainer.resume(…, { fork: true })) to do so: ` +
          `the ${later.length} later checkpoint(s) are then moved to checkpoints/abandoned-…/ and kept.`,
      );
    }
    return { checkpoint: explicit, extra: await load(explicit), damaged: [] };
  }
  if (all.length === 0) throw new Error(`resume: run '${runDir}' has no checkpoint yet (checkpoints/ is empty)`);
  const damaged: ResumeChoice["damaged"] = [];
  for (let i = all.length - 1; i >= 0; i--) {
    const c = all[i]!;
    try {
      return { checkpoint: c.path, extra: await load(c.path), damaged };
    } catch (e) {
      damaged.push({ path: c.path, error: e instanceof Error ? e.message : String(e) });
    }
  }
  throw new Error(`resume: no checkpoint of '${runDir}' loads:\n${damaged.map((d) => `  ${d.error}`).join("\n")}`);
}

/**
 * Validates the checkpoint's "primal.extra" text; errors name the file. Knobs in it (written by
 * older versions) are not read: the core's knobs metadata is the only source.
 */
export function parseCheckpointExtra(text: string, path: string): void {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(
      `checkpoint '${path}': metadata 'primal.extra' is not valid JSON (${e instanceof Error ? e.message : String(e)})`,
    );
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new Error(
      `checkpoint '${path}': metadata 'primal.extra' must be a JSON object, got ${v === null ? "null" : typeof v}`,
    );
  }
}
