// Which checkpoint a resume starts from, and the config it resumes with. Kept out of the Trainer
// facade: these are the rules that keep a run's history whole when it is resumed, and that make
// every byte steering a resume a checked one. A checkpoint's metadata (seed, step, tokens, knobs,
// config, and the facade's "primal.extra") carries CRC-32 checksums the core verifies; "primal.extra"
// holds a checked copy of the run's config, which a resume prefers over run.json.
import { lstatSync } from "node:fs";
import { basename, dirname } from "node:path";
import { ConfigError, resolveConfig, savedConfigInput, type TrainerConfig, type TrainerConfigInput } from "./config.js";
import { native } from "./native.js";
import { listCheckpoints } from "./tracking/files.js";
import { readRunMeta } from "./tracking/runStore.js";

/** What the facade stores in a checkpoint's "primal.extra" metadata. */
export interface CheckpointExtra {
  runId?: string;
  step?: number;
  /** The run's config (savedConfigInput form, without the knobs), covered by the metadata checksums. */
  config?: Record<string, unknown>;
  /** Ranks the checkpoint was trained with (absent in checkpoints written before it existed). */
  worldSize?: number;
}

export interface ResumeChoice {
  checkpoint: string;
  extra: CheckpointExtra;
  /** Newer checkpoints that failed to load (skipped), newest first. */
  damaged: { path: string; error: string }[];
}

/** The checkpoint whose metadata a resume takes its config from. */
export interface ConfigSource {
  checkpoint: string;
  /** false: written before metadata checksums existed, so nothing vouches for its metadata. */
  checked: boolean;
  extra: CheckpointExtra;
  /** Candidates after this one (older), this one first: where loading starts. */
  remaining: string[];
  /** Newer candidates whose metadata is damaged, newest first. */
  damaged: { path: string; error: string }[];
  /** One file was named: its errors are the resume's errors. */
  explicit: boolean;
}

const stepOf = (path: string): number | null => {
  const m = /^step-(\d+)\.safetensors$/.exec(basename(path));
  return m ? Number(m[1]) : null;
};

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * The checkpoints a resume may start from, newest first. `explicit` null: every checkpoint of the
 * run. Otherwise that file, which must be a regular file; when the run has newer checkpoints,
 * resuming from it starts a branch and needs `fork`.
 */
export function checkpointCandidates(runDir: string, explicit: string | null, fork: boolean): string[] {
  const all = listCheckpoints(runDir);
  if (explicit === null) {
    if (all.length === 0) throw new Error(`resume: run '${runDir}' has no checkpoint yet (checkpoints/ is empty)`);
    return all.map((c) => c.path).reverse();
  }
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
  return [explicit];
}

/**
 * The newest candidate whose metadata passes its checksums (the core verifies them), and the
 * "primal.extra" it holds. A single explicit candidate that fails throws its error; otherwise
 * damaged ones are skipped and listed.
 */
export function configSource(candidates: string[], explicit: boolean): ConfigSource {
  const damaged: ConfigSource["damaged"] = [];
  for (let i = 0; i < candidates.length; i++) {
    const path = candidates[i]!;
    try {
      const meta = native().checkpointMetadata(path);
      const extra = parseCheckpointExtra(meta.fields["primal.extra"] ?? "{}", path);
      return { checkpoint: path, checked: meta.checked, extra, remaining: candidates.slice(i), damaged, explicit };
    } catch (e) {
      if (explicit) throw e;
      damaged.push({ path, error: message(e) });
    }
  }
  throw new Error(`resume: no checkpoint loads:\n${damaged.map((d) => `  ${d.error}`).join("\n")}`);
}

/**
 * Loads the first of `source.remaining` that loads (the newest, unless its tensors are damaged);
 * `load` resolves with the checkpoint's "primal.extra" text. A checkpoint loaded must carry the
 * same checked config as the one the trainer was built from (or none: it predates the copy).
 */
export async function chooseCheckpoint(
  runDir: string,
  source: ConfigSource,
  load: (path: string) => Promise<string>,
): Promise<ResumeChoice> {
  const damaged = [...source.damaged];
  for (const path of source.remaining) {
    try {
      const extra = parseCheckpointExtra(await load(path), path);
      if (extra.config && source.extra.config && canonicalJson(extra.config) !== canonicalJson(source.extra.config))
        throw new Error(
          `checkpoint '${path}' holds another run config than '${basename(source.checkpoint)}' (not from this run?)`,
        );
      return { checkpoint: path, extra, damaged };
    } catch (e) {
      if (source.explicit) throw e;
      damaged.push({ path, error: message(e) });
    }
  }
  throw new Error(`resume: no checkpoint of '${runDir}' loads:\n${damaged.map((d) => `  ${d.error}`).join("\n")}`);
}

/** Validates the checkpoint's "primal.extra" text; errors name the file. Knobs in it are not read. */
export function parseCheckpointExtra(text: string, path: string): CheckpointExtra {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`checkpoint '${path}': metadata 'primal.extra' is not valid JSON (${message(e)})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new Error(
      `checkpoint '${path}': metadata 'primal.extra' must be a JSON object, got ${v === null ? "null" : typeof v}`,
    );
  }
  const { runId, step, config, worldSize } = v as Record<string, unknown>;
  if (config !== undefined && (config === null || typeof config !== "object" || Array.isArray(config)))
    throw new Error(`checkpoint '${path}': metadata 'primal.extra' has a config that is not an object`);
  return {
    ...(typeof runId === "string" ? { runId } : {}),
    ...(typeof step === "number" ? { step } : {}),
    ...(config !== undefined ? { config: config as Record<string, unknown> } : {}),
    ...(typeof worldSize === "number" ? { worldSize } : {}),
  };
}

/** JSON with object keys sorted, so two configs compare by content. */
export function canonicalJson(v: unknown): string {
  if (v === undefined) return "undefined";
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .filter((k) => o[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(",")}}`;
}

/**
 * The top-level config fields where run.json and a checkpoint's checked copy disagree, leaving out
 * the machine side a resume may change (device, threads, memory budget, communicator) and the
 * knobs (run.json records those the run started with; a checkpoint keeps its own, once).
 */
export function configDifferences(runJson: Record<string, unknown>, checked: Record<string, unknown>): string[] {
  const machine = new Set(["device", "threads", "memoryBudget", "distributed", "home", "knobs"]);
  const keys = new Set([...Object.keys(runJson), ...Object.keys(checked)]);
  return [...keys].filter((k) => !machine.has(k) && canonicalJson(runJson[k]) !== canonicalJson(checked[k])).sort();
}

/**
 * The config a resume builds its trainer from, and the warnings to record: the checked copy in
 * the source checkpoint when it belongs to this run (run.json's id), else run.json's config (a
 * checkpoint that predates the copy, or one another run wrote). `machine` (device, threads, memory
 * budget, communicator) is the resuming session's and wins; the run's home is where the run is.
 */
export function resumeConfig(
  runDir: string,
  source: ConfigSource,
  machine: Record<string, unknown>,
): { config: TrainerConfig; warnings: string[] } {
  const runMeta = readRunMeta(runDir);
  const runJson = savedConfigInput(runMeta.config) as Record<string, unknown>;
  const warnings: string[] = [];
  let copy = source.extra.config;
  if (copy && source.extra.runId !== runMeta.id) {
    warnings.push(
      `checkpoint '${source.checkpoint}' was written by run ${source.extra.runId ?? "(unknown)"}, not by this ` +
        `run (${runMeta.id}); resumed with run.json's config`,
    );
    copy = undefined;
  }
  const differing = copy ? configDifferences(runJson, copy) : [];
  if (differing.length > 0)
    warnings.push(
      `run.json differs from the checked copy of the config in '${source.checkpoint}' in ${differing.join(", ")} ` +
        `(damaged or edited); resumed with the checked copy`,
    );
  try {
    const input = { ...(copy ?? runJson), home: dirname(runDir), ...machine } as TrainerConfigInput;
    return { config: resolveConfig(input), warnings };
  } catch (e) {
    if (!(e instanceof ConfigError) || !copy) throw e;
    throw new ConfigError(`checkpoint '${source.checkpoint}': its checked config is not valid: ${e.message}`);
  }
}

/** The warning for a loaded checkpoint that predates metadata checksums (none when it has them). */
export function uncheckedWarning(choice: ResumeChoice, source: ConfigSource): string[] {
  const checked =
    choice.checkpoint === source.checkpoint ? source.checked : native().checkpointMetadata(choice.checkpoint).checked;
  return checked
    ? []
    : [
        `checkpoint '${choice.checkpoint}' predates metadata checksums: its seed, step, token count, knobs and ` +
          `config were loaded unchecked`,
      ];
}
