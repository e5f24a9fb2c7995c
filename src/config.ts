// The user-facing trainer config: zod-validated, with errors that name the field and the
// allowed values. This schema is where user input is validated; the core's validate() only guards
// its invariants. Defaults are the core's TrainConfig in native/include/primal/trainer.h
// (test/engine/contracts.test.ts checks every one); the knobs' schema and defaults come from the
// core's own table (src/knobs.ts).
import { availableParallelism } from "node:os";
import { z } from "zod";
import { PRESETS, PRESET_NAMES, type PresetName } from "./presets.js";
import type { NativeModelConfig, NativeTrainerConfig } from "./native.js";
import { parseByteSize } from "./byteSize.js";
import { defaultKnobs, knobsSchema, type Knobs } from "./knobs.js";

const positiveInt = z.number().int().positive();

/**
 * Evaluation tokens per split unless configured (eval.maxTokens, --eval-tokens; 0 = all):
 * 128 Ki tokens measure the loss to about ±0.01 nats and take seconds, where whole splits
 * (about 1M tokens each) took a third of `npm start`.
 */
export const DEFAULT_EVAL_TOKENS = 131072;
const unit = z.number().min(0).max(1);

export const configSchema = z
  .object({
    preset: z.enum(PRESET_NAMES as [PresetName, ...PresetName[]]).default("small"),
    model: z
      .object({
        vocab: positiveInt,
        dModel: positiveInt,
        layers: positiveInt,
        heads: positiveInt,
        ffn: positiveInt,
        seq: positiveInt,
      })
      .partial()
      .strict()
      .optional(),
    quant: z.enum(["fp", "ste", "poltergeist"]).default("poltergeist"),
    actBits: z.union([z.number().int().min(2).max(16), z.null()]).optional(),
    batch: positiveInt.optional(),
    accum: positiveInt.default(1),
    /** Windows per executed chunk of a micro-batch (must divide batch); "auto": batch, or the planner's pick. */
    microBatch: z.union([positiveInt, z.literal("auto")]).default("auto"),
    /** Activation recompute: "block" keeps only each block's input; "auto": the planner's pick. */
    recompute: z.enum(["none", "block", "auto"]).default("auto"),
    /** Device memory the trainer may use: bytes or "10GiB"; picks microBatch/recompute left on auto. */
    memoryBudget: z
      .union([z.number().int().min(0), z.string()])
      .transform((v, ctx) => {
        try {
          return parseByteSize(v);
        } catch (e) {
          ctx.addIssue({ code: "custom", message: (e as Error).message.replace(/^size: /, "") });
          return z.NEVER;
        }
      })
      .optional(),
    steps: positiveInt.default(300),
    warmup: z.number().int().min(0).default(30),
    minLrRatio: unit.default(0.1),
    weightDecay: z.number().min(0).default(0.1),
    gradClip: z.number().default(1.0),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(1),
    /** The knobs to start from (the rest: the core's defaults); built from the core's table on first use. */
    knobs: z.lazy(() => knobsSchema().partial()).default({}),
    device: z.enum(["cpu", "cuda", "auto"]).default("auto"),
    // More threads than cores only slows a step down (a typo like 1000 ran minutes without one).
    threads: z
      .number()
      .int()
      .min(0)
      .refine((n) => n <= availableParallelism(), {
        message: `at most ${availableParallelism()} (the cores of this machine; 0 = all)`,
      })
      .optional(),
    /**
     * Data-parallel training over the ranks of an `mpirun`/`srun` launch (docs/distributed.md):
     * "mpi" (CPU or GPU, host memory) or "nccl" (one GPU per rank, chosen by the local rank).
     */
    distributed: z.enum(["mpi", "nccl"]).optional(),
    data: z
      .object({
        /** "sotu" (embedded State of the Union corpus) or a path to a .txt file or directory. */
        corpus: z.string().min(1).default("sotu"),
        tokenizer: z.enum(["bytes", "gpt2"]).optional(),
        /** Directory holding WikiText-2 (valid.txt/test.txt or wiki.valid.raw…); env PRIMAL_WIKITEXT_DIR. */
        wikitextDir: z.string().optional(),
        cacheDir: z.string().optional(),
      })
      .strict()
      .default({ corpus: "sotu" }),
    eval: z
      .object({
        every: z.number().int().min(0).default(0),
        /** Cap on evaluation tokens per split (0 = all); the default keeps evaluation to seconds. */
        maxTokens: z.number().int().min(0).default(DEFAULT_EVAL_TOKENS),
      })
      .strict()
      .default({ every: 0, maxTokens: DEFAULT_EVAL_TOKENS }),
    sampleEvery: z.number().int().min(0).default(50),
    samplePrompt: z.string().default("The future of AI is"),
    sampleTokens: z.number().int().min(1).max(4096).default(64),
    sampleTemperature: z.number().min(0).default(0.8),
    sampleTopK: z.number().int().min(0).default(40),
    checkpointEvery: z.number().int().min(0).default(100),
    keepCheckpoints: z.number().int().min(1).default(3),
    name: z.string().optional(),
    home: z.string().optional(),
  })
  .strict()
  // Rules across fields, on the values the preset fills in (run only when every field is valid).
  .superRefine((c, ctx) => {
    const { model, batch, tokenizer } = presetFilled(c);
    const issue = (path: string[], message: string) => ctx.addIssue({ code: "custom", path, message });
    if (model.dModel % model.heads !== 0 || (model.dModel / model.heads) % 2 !== 0)
      issue(["model", "heads"], `dModel (${model.dModel}) must split into heads (${model.heads}) of even size`);
    if (tokenizer === "gpt2" && model.vocab < 50257)
      issue(["data", "tokenizer"], `gpt2 needs model.vocab >= 50257 (got ${model.vocab})`);
    if (tokenizer === "bytes" && model.vocab < 256)
      issue(["data", "tokenizer"], `bytes needs model.vocab >= 256 (got ${model.vocab})`);
    if (c.microBatch !== "auto" && batch % c.microBatch !== 0)
      issue(["microBatch"], `must divide batch (${batch}), got ${c.microBatch}`);
  });

/** The model, batch and tokenizer a config gets from its preset where it leaves them out. */
function presetFilled(c: {
  preset: PresetName;
  model?: Partial<NativeModelConfig>;
  batch?: number;
  data: { tokenizer?: "bytes" | "gpt2" };
}): { model: NativeModelConfig; batch: number; tokenizer: "bytes" | "gpt2" } {
  const preset = PRESETS[c.preset];
  const model: NativeModelConfig = { ...preset.model, ...(c.model ?? {}) };
  return {
    model,
    batch: c.batch ?? preset.batch,
    tokenizer: c.data.tokenizer ?? (model.vocab <= 256 ? "bytes" : "gpt2"),
  };
}

export type TrainerConfigInput = z.input<typeof configSchema>;
export type TrainerConfig = Omit<z.output<typeof configSchema>, "memoryBudget"> & {
  model: NativeModelConfig;
  batch: number;
  /** Bytes (0 = no budget). */
  memoryBudget: number;
  actBits: number | null;
  /**
   * The knobs this trainer started from (the core's defaults filled in; for a resume, the
   * checkpoint's): a record, kept in run.json. The knobs in force are the core's: `Trainer.knobs()`.
   */
  knobs: Knobs;
  data: { corpus: string; tokenizer: "bytes" | "gpt2"; wikitextDir?: string; cacheDir?: string };
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path.length ? issue.path.join(".") : "(root)";
  const i = issue as unknown as { code: string; values?: unknown[]; keys?: string[] };
  if (i.code === "invalid_value" && i.values)
    return `config.${path}: must be one of ${i.values.map((v) => JSON.stringify(v)).join(", ")}`;
  if (i.code === "unrecognized_keys" && i.keys)
    return `config${issue.path.length ? "." + path : ""}: unknown field(s) ${i.keys.join(", ")}`;
  return `config.${path}: ${issue.message}`;
}

/** Validates (configSchema) and completes a config: preset values filled in, defaults applied. */
export function resolveConfig(input: TrainerConfigInput = {}): TrainerConfig {
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) throw new ConfigError(parsed.error.issues.map(describeIssue).join("\n"));
  const c = parsed.data;
  const { model, batch, tokenizer } = presetFilled(c);
  return {
    ...c,
    model,
    batch,
    memoryBudget: c.memoryBudget ?? 0,
    actBits: c.actBits === undefined ? (c.quant === "fp" ? null : 8) : c.actBits,
    knobs: { ...defaultKnobs(), ...c.knobs } as Knobs,
    data: { ...c.data, tokenizer },
  };
}

/**
 * The input that reproduces a config saved by resolveConfig (run.json): every field the schema
 * knows, as saved; what was recorded beside them (the backend, the execution plan) is dropped.
 */
export function savedConfigInput(saved: Record<string, unknown>): TrainerConfigInput {
  const fields = new Set(Object.keys(configSchema.shape));
  const input = Object.fromEntries(Object.entries(saved).filter(([key]) => fields.has(key))) as Record<string, unknown>;
  // Nothing in a run file picks a folder to write to: a shared or hostile run.json would make a
  // resume write caches or runs anywhere. The defaults (or the caller's overrides) apply instead.
  delete input.home;
  if (input.data && typeof input.data === "object") {
    const { cacheDir: _untrusted, ...data } = input.data as Record<string, unknown>;
    input.data = data;
  }
  return input as TrainerConfigInput;
}

export function nativeConfig(c: TrainerConfig, device: "cpu" | "cuda" | "auto" = c.device): NativeTrainerConfig {
  return {
    model: c.model,
    quant: c.quant,
    actBits: c.actBits,
    batch: c.batch,
    accum: c.accum,
    microBatch: c.microBatch === "auto" ? 0 : c.microBatch,
    recompute: c.recompute,
    memoryBudget: c.memoryBudget,
    seed: c.seed,
    warmup: c.warmup,
    totalSteps: c.steps,
    minLrRatio: c.minLrRatio,
    weightDecay: c.weightDecay,
    gradClip: c.gradClip,
    knobs: c.knobs,
    device,
    ...(c.threads !== undefined ? { threads: c.threads } : {}),
    ...(c.distributed !== undefined ? { distributed: c.distributed } : {}),
  };
}
