/**
 * Exports a PRIMAL checkpoint as a GGUF file of llama.cpp's `llama` architecture.
 *
 * The model maps one to one: RMSNorm (same epsilon), attention with 1/sqrt(head dim) scaling,
 * SwiGLU (silu(gate) * up), a head tied to the embedding (no output.weight: llama.cpp then uses
 * token_embd for the head). PRIMAL's RoPE rotates the interleaved pairs (2i, 2i+1) of each head
 * with angle pos * theta^(-2i/D); that is llama.cpp's "normal" RoPE (the one the `llama`
 * architecture uses), so the Q/K rows are written in PRIMAL's order, unpermuted. (The HF
 * converter's permutation exists to turn HF's rotate-half layout back into this one.)
 *
 * Weights are written as PRIMAL computes them, W = gamma0 * s * level per layer:
 *  - ternary levels (bridge off; STE) -> TQ2_0/TQ1_0 with one fp16 scale per 256-block, or
 *    Q4_0 ((q - 8) * d, q in {7, 8, 9}) for rows whose length is not a multiple of 256;
 *  - bridge 2/3: five levels {0, ±2, ±3} * (gamma0 * s / 3) -> Q4_0;
 *  - anything else (other bridge values, fp runs) -> f16 or f32.
 * The only rounding in the quantized types is the fp16 rounding of the scale.
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { BRIDGE_OFF_LEVEL, CheckpointFile, type CheckpointMeta } from "./checkpointFile.js";
import { writeGGUF, GGUFValueType, type GGUFTensor, type GGUFValue } from "./gguf.js";
import {
  GGMLType,
  LlamaFileType,
  TYPE_TRAITS,
  dequantize,
  packF16,
  packF32,
  packQ4_0,
  packTQ1_0,
  packTQ2_0,
} from "./ggmlQuants.js";
import { byteVocab, gpt2Vocab, type GGUFVocab } from "./ggufVocab.js";
import { listCheckpoints } from "../tracking/files.js";
import { ensureDir, writeError } from "../tracking/guardedWrite.js";
import { readRunMeta } from "../tracking/runStore.js";
import { packageVersion } from "../paths.js";

export const GGUF_EXPORT_TYPES = ["auto", "tq2_0", "tq1_0", "q4_0", "f16", "f32"] as const;
export type GGUFExportType = (typeof GGUF_EXPORT_TYPES)[number];

export interface GGUFExportOptions {
  /** Checkpoint step (default: the latest). */
  step?: number;
  type?: GGUFExportType;
  /** Output file (default: <run>/export/<run id>-step<N>-<type>.gguf). */
  out?: string;
  /** Replace an existing output file. */
  force?: boolean;
  /** Token embedding (and tied head) type; default f32 for type f32, f16 otherwise. */
  embedType?: "f16" | "f32";
  /** The run the default output goes into: its folders are created without following links. */
  runDir?: string;
}

export interface GGUFTensorReport {
  name: string;
  type: string;
  /** Max |exported value - PRIMAL's value| over the tensor. */
  maxAbsError: number;
  /** That error relative to the tensor's largest |value| (0 when exact). */
  relError: number;
}

export interface GGUFExportResult {
  path: string;
  bytes: number;
  step: number;
  /** The requested type after `auto` was resolved (the file type). */
  type: string;
  params: number;
  bytesPerParam: number;
  tensors: GGUFTensorReport[];
  /** One line on what is exact and what is rounded. */
  exactness: string;
}

const LINEAR_NAMES = ["attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down"] as const;
const LLAMA_NAMES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"] as const;

/** How one linear layer's weights are held: integer levels times one scale, or plain floats. */
type LayerWeights =
  | { kind: "levels"; levels: Int8Array; d: number; values: Float32Array; ternary: boolean }
  | { kind: "dense"; values: Float32Array };

const fround = Math.fround;
const TWO_THIRDS = fround(2 / 3);

/** Poltergeist: codes -2..2 -> gamma0*s*level, level = sign(c) * (|c| == 2 ? 1 : bridge). */
function poltergeistLayer(codes: Int8Array, gamma0: number, s: number, bridge: number): LayerWeights {
  const scale = fround(gamma0 * s);
  const b = fround(bridge);
  const lut = new Map<number, number>();
  for (const c of [-2, -1, 0, 1, 2]) {
    const mag = c === 2 || c === -2 ? 1 : b;
    lut.set(c, c === 0 ? 0 : fround(scale * (c > 0 ? mag : -mag)));
  }
  const values = new Float32Array(codes.length);
  let hasBridge = false;
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]!;
    const v = lut.get(c);
    if (v === undefined) throw new Error(`poltergeist code ${c} is outside -2..2`);
    values[i] = v;
    if (c === 1 || c === -1) hasBridge = true;
  }
  if (!hasBridge) {
    const levels = new Int8Array(codes.length);
    for (let i = 0; i < codes.length; i++) levels[i] = codes[i]! / 2;
    return { kind: "levels", levels, d: scale, values, ternary: true };
  }
  if (b === TWO_THIRDS) {
    // {0, ±b, ±1} = {0, ±2, ±3} / 3.
    const levels = new Int8Array(codes.length);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i]!;
      levels[i] = c === 2 ? 3 : c === -2 ? -3 : c === 1 ? 2 : c === -1 ? -2 : 0;
    }
    return { kind: "levels", levels, d: scale / 3, values, ternary: false };
  }
  return { kind: "dense", values };
}

/** BitNet STE: gamma = mean|W| (>= 1e-8), W_q = gamma * clamp(round_half_even(W / gamma), -1, 1). */
function steLayer(w: Float32Array): LayerWeights {
  let sumAbs = 0;
  for (let i = 0; i < w.length; i++) sumAbs += Math.abs(w[i]!);
  const gamma = Math.max(fround(w.length ? sumAbs / w.length : 0), fround(1e-8));
  const levels = new Int8Array(w.length);
  const values = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const x = fround(w[i]! / gamma);
    let r = Math.round(x);
    if (Math.abs(x - Math.trunc(x)) === 0.5) r = 2 * Math.round(x / 2); // ties to even
    r = Math.max(-1, Math.min(1, r));
    levels[i] = r;
    values[i] = fround(gamma * r);
  }
  return { kind: "levels", levels, d: gamma, values, ternary: true };
}

interface Encoded {
  type: GGMLType;
  data: Uint8Array;
}

function dense(values: Float32Array, type: GGMLType.F16 | GGMLType.F32): Encoded {
  return { type, data: type === GGMLType.F32 ? packF32(values) : packF16(values) };
}

/** Encodes one linear layer for the requested type; throws on combinations that would lose the weights. */
function encodeLayer(lw: LayerWeights, cols: number, want: GGUFExportType, where: string, how: string): Encoded {
  if (want === "f32") return dense(lw.values, GGMLType.F32);
  if (want === "f16") return dense(lw.values, GGMLType.F16);
  const q4 = (l: Extract<LayerWeights, { kind: "levels" }>): Encoded => {
    if (cols % 32 !== 0) throw new Error(`${where}: rows of ${cols} values are not whole q4_0 blocks of 32`);
    return { type: GGMLType.Q4_0, data: packQ4_0(l.levels, l.d) };
  };
  if (want === "auto") {
    if (lw.kind === "dense") return dense(lw.values, GGMLType.F16);
    if (lw.ternary && cols % 256 === 0) return { type: GGMLType.TQ2_0, data: packTQ2_0(lw.levels, lw.d) };
    return cols % 32 === 0 ? q4(lw) : dense(lw.values, GGMLType.F16);
  }
  if (lw.kind === "dense")
    throw new Error(
      `unsupported combination: ${want} cannot hold the weights of ${how} without rounding them; use --type f16, f32 or auto`,
    );
  if (want === "q4_0") return q4(lw);
  // tq1_0 / tq2_0
  if (!lw.ternary)
    throw new Error(
      `unsupported combination: ${want} holds only ternary weights, and ${where} uses the bridge levels of ${how}; use --type q4_0 or auto`,
    );
  if (cols % 256 !== 0) return q4(lw); // TQ blocks span 256 values of a row; Q4_0 holds ternary exactly too
  return want === "tq1_0"
    ? { type: GGMLType.TQ1_0, data: packTQ1_0(lw.levels, lw.d) }
    : { type: GGMLType.TQ2_0, data: packTQ2_0(lw.levels, lw.d) };
}

function maxErr(values: Float32Array, enc: Encoded): { maxAbsError: number; relError: number } {
  const back = dequantize(enc.type, enc.data, values.length);
  let err = 0;
  let amax = 0;
  for (let i = 0; i < values.length; i++) {
    err = Math.max(err, Math.abs(back[i]! - values[i]!));
    amax = Math.max(amax, Math.abs(values[i]!));
  }
  return { maxAbsError: err, relError: amax > 0 ? err / amax : 0 };
}

export interface ExportSource {
  checkpoint: string;
  tokenizer: "bytes" | "gpt2";
  runId: string;
  runName?: string;
}

/** Writes the GGUF file for one checkpoint. */
export function exportCheckpointGGUF(src: ExportSource, out: string, opts: GGUFExportOptions = {}): GGUFExportResult {
  const requested = opts.type ?? "auto";
  if (!GGUF_EXPORT_TYPES.includes(requested))
    throw new Error(`unknown GGUF type '${String(requested)}' (one of ${GGUF_EXPORT_TYPES.join(", ")})`);
  if (!opts.force && existsSync(out)) throw new Error(`'${out}' already exists; pass --force to replace it`);
  const ck = CheckpointFile.open(src.checkpoint);
  try {
    const meta = ck.meta;
    const m = meta.model;
    // An fp run's latent weights are floats: f32 keeps them exactly.
    const want: GGUFExportType = requested === "auto" && meta.quant === "fp" ? "f32" : requested;
    const how =
      meta.quant === "poltergeist"
        ? `poltergeist with bridge ${meta.bridge === null ? "off" : meta.bridge.toFixed(4)}`
        : `a ${meta.quant} run`;
    if (meta.quant === "fp" && (want === "tq1_0" || want === "tq2_0" || want === "q4_0"))
      throw new Error(
        `unsupported combination: ${want} for an fp run (its weights are not ternary); use --type f32, f16 or auto`,
      );
    const tensors: GGUFTensor[] = [];
    const reports: GGUFTensorReport[] = [];
    const add = (name: string, dims: number[], values: Float32Array, enc: Encoded) => {
      tensors.push({ name, type: enc.type, dims, data: enc.data });
      reports.push({ name, type: TYPE_TRAITS[enc.type].name, ...maxErr(values, enc) });
    };
    const embedType =
      opts.embedType === "f32" || (opts.embedType === undefined && want === "f32") ? GGMLType.F32 : GGMLType.F16;
    const wte = ck.f32("param.wte", m.vocab * m.dModel).data; // padded rows beyond vocab are never used
    add("token_embd.weight", [m.dModel, m.vocab], wte, dense(wte, embedType));
    const nl = 7 * m.layers;
    const scales = meta.quant === "poltergeist" ? ck.f32("ghost.scale", nl, true).data : undefined;
    const gamma0 = meta.quant === "poltergeist" ? ck.f32("ghost.gamma0", nl, true).data : undefined;
    const counts = new Map<GGMLType, number>();
    let params = m.vocab * m.dModel;
    for (let b = 0; b < m.layers; b++) {
      const pre = `blocks.${b}.`;
      const norm1 = ck.f32(`param.${pre}attn_norm`, m.dModel, true).data;
      add(`blk.${b}.attn_norm.weight`, [m.dModel], norm1, dense(norm1, GGMLType.F32));
      for (let j = 0; j < 7; j++) {
        const li = 7 * b + j;
        const name = pre + LINEAR_NAMES[j];
        const rows = j === 4 || j === 5 ? m.ffn : m.dModel;
        const cols = j === 6 ? m.ffn : m.dModel;
        let lw: LayerWeights;
        if (meta.quant === "poltergeist") {
          lw = poltergeistLayer(
            ck.i8(`code.${name}`, rows * cols).data,
            gamma0![li]!,
            scales![li]!,
            meta.bridge ?? BRIDGE_OFF_LEVEL,
          );
        } else {
          const w = ck.f32(`param.${name}`, rows * cols, true).data;
          lw = meta.quant === "ste" ? steLayer(w) : { kind: "dense", values: w };
        }
        const enc = encodeLayer(lw, cols, want, name, how);
        counts.set(enc.type, (counts.get(enc.type) ?? 0) + rows * cols);
        params += rows * cols;
        add(`blk.${b}.${LLAMA_NAMES[j]}.weight`, [cols, rows], lw.values, enc);
        if (j === 3) {
          const norm2 = ck.f32(`param.${pre}mlp_norm`, m.dModel, true).data;
          add(`blk.${b}.ffn_norm.weight`, [m.dModel], norm2, dense(norm2, GGMLType.F32));
        }
      }
      params += 2 * m.dModel;
    }
    const normF = ck.f32("param.norm_f", m.dModel, true).data;
    add("output_norm.weight", [m.dModel], normF, dense(normF, GGMLType.F32));
    params += m.dModel;

    // The file type names what most linear weights are.
    let main = GGMLType.F32;
    let most = -1;
    for (const [t, n] of counts) if (n > most) [main, most] = [t, n];
    const fileType = {
      [GGMLType.F32]: LlamaFileType.ALL_F32,
      [GGMLType.F16]: LlamaFileType.MOSTLY_F16,
      [GGMLType.Q4_0]: LlamaFileType.MOSTLY_Q4_0,
      [GGMLType.TQ1_0]: LlamaFileType.MOSTLY_TQ1_0,
      [GGMLType.TQ2_0]: LlamaFileType.MOSTLY_TQ2_0,
    }[main];
    const exactness = describeExactness(reports, embedType, meta);
    const vocab = src.tokenizer === "gpt2" ? gpt2Vocab(m.vocab) : byteVocab(m.vocab);
    const md = metadata(meta, vocab, src, fileType, TYPE_TRAITS[main].name, exactness);
    // Inside the run (the default out) the folder is created without following links; a path the
    // caller chose is taken as it is.
    if (opts.runDir !== undefined) ensureDir(opts.runDir, dirname(out));
    else mkdirSync(dirname(out), { recursive: true });
    let bytes: number;
    try {
      bytes = writeGGUF(out, md, tensors, { force: opts.force ?? false });
    } catch (e) {
      throw writeError(out, e);
    }
    return {
      path: out,
      bytes,
      step: meta.step,
      type: TYPE_TRAITS[main].name,
      params,
      bytesPerParam: bytes / params,
      tensors: reports,
      exactness,
    };
  } finally {
    ck.close();
  }
}

function describeExactness(reports: GGUFTensorReport[], embedType: GGMLType, meta: CheckpointMeta): string {
  const linear = reports.filter((r) => /attn_(q|k|v|output)|ffn_(gate|up|down)/.test(r.name));
  const types = [...new Set(linear.map((r) => r.type))].join("/");
  const worst = Math.max(0, ...linear.map((r) => r.relError));
  const quantized = linear.every((r) => r.type === "tq2_0" || r.type === "tq1_0" || r.type === "q4_0");
  const lin = quantized
    ? `linear weights ${types}: PRIMAL's integer levels exactly, one fp16 scale per layer (max relative error ${worst.toExponential(2)})`
    : `linear weights ${types} (max relative error ${worst.toExponential(2)})`;
  const emb = embedType === GGMLType.F32 ? "embedding/head f32 (exact)" : "embedding/head f16 (rounded)";
  const act =
    meta.actBits > 0
      ? `; PRIMAL's ${meta.actBits}-bit activation quantization is not part of the file (llama.cpp quantizes activations its own way)`
      : "";
  return `${lin}; ${emb}; norms f32 (exact)${act}`;
}

function metadata(
  meta: CheckpointMeta,
  vocab: GGUFVocab,
  src: ExportSource,
  fileType: number,
  typeName: string,
  exactness: string,
): Map<string, GGUFValue> {
  const m = meta.model;
  const md = new Map<string, GGUFValue>();
  const str = (k: string, v: string) => md.set(k, { type: GGUFValueType.STRING, value: v });
  const u32 = (k: string, v: number) => md.set(k, { type: GGUFValueType.UINT32, value: v });
  const f32 = (k: string, v: number) => md.set(k, { type: GGUFValueType.FLOAT32, value: v });
  str("general.architecture", "llama");
  str("general.name", src.runName ?? src.runId);
  u32("general.file_type", fileType);
  u32("general.quantization_version", 2);
  u32("general.alignment", 32);
  // Provenance.
  str("general.primal.version", packageVersion());
  str("general.primal.run_id", src.runId);
  u32("general.primal.step", meta.step);
  str("general.primal.quantizer", meta.quant);
  str(
    "general.primal.bridge",
    meta.quant !== "poltergeist" ? "n/a" : meta.bridge === null ? "off" : String(meta.bridge),
  );
  u32("general.primal.act_bits", meta.actBits);
  str("general.primal.tensor_type", typeName);
  str("general.primal.exactness", exactness);
  // The llama architecture's hyperparameters.
  u32("llama.context_length", m.seq);
  u32("llama.embedding_length", m.dModel);
  u32("llama.block_count", m.layers);
  u32("llama.feed_forward_length", m.ffn);
  u32("llama.attention.head_count", m.heads);
  u32("llama.attention.head_count_kv", m.heads);
  f32("llama.attention.layer_norm_rms_epsilon", m.normEps);
  f32("llama.rope.freq_base", m.ropeTheta);
  u32("llama.rope.dimension_count", m.dModel / m.heads);
  u32("llama.vocab_size", m.vocab);
  // Tokenizer.
  str("tokenizer.ggml.model", vocab.model);
  str("tokenizer.ggml.pre", vocab.pre);
  md.set("tokenizer.ggml.tokens", { type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value: vocab.tokens });
  md.set("tokenizer.ggml.token_type", { type: GGUFValueType.ARRAY, itemType: GGUFValueType.INT32, value: vocab.types });
  md.set("tokenizer.ggml.merges", { type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value: vocab.merges });
  if (vocab.bos !== undefined) u32("tokenizer.ggml.bos_token_id", vocab.bos);
  if (vocab.eos !== undefined) u32("tokenizer.ggml.eos_token_id", vocab.eos);
  md.set("tokenizer.ggml.add_bos_token", { type: GGUFValueType.BOOL, value: false });
  md.set("tokenizer.ggml.add_eos_token", { type: GGUFValueType.BOOL, value: false });
  return md;
}

/** The checkpoint of `step` (default: latest) in a run directory, with clear errors. */
export function findCheckpoint(runDir: string, step?: number): { step: number; path: string } {
  const all = listCheckpoints(runDir);
  if (all.length === 0)
    throw new Error(`run '${runDir}' has no checkpoints (checkpoints/ is empty); train or save first`);
  if (step === undefined) return all[all.length - 1]!;
  const hit = all.find((c) => c.step === step);
  if (!hit)
    throw new Error(
      `run '${runDir}' has no checkpoint at step ${step} (available: ${all.map((c) => c.step).join(", ")})`,
    );
  return hit;
}

/** Exports a run's checkpoint (latest or opts.step) to GGUF. */
export function exportRunGGUF(run: string, opts: GGUFExportOptions = {}): GGUFExportResult {
  const runDir = resolve(run);
  if (!existsSync(runDir) || !statSync(runDir).isDirectory()) throw new Error(`run '${run}' does not exist`);
  const meta = readRunMeta(runDir);
  const ck = findCheckpoint(runDir, opts.step);
  const cfg = meta.config as { data?: { tokenizer?: "bytes" | "gpt2" }; model?: { vocab?: number } };
  const tokenizer = cfg.data?.tokenizer ?? ((cfg.model?.vocab ?? 256) <= 256 ? "bytes" : "gpt2");
  const out = opts.out ?? join(runDir, "export", `${basename(runDir)}-step${ck.step}-${opts.type ?? "auto"}.gguf`);
  return exportCheckpointGGUF(
    { checkpoint: ck.path, tokenizer, runId: meta.id, ...(meta.name !== undefined ? { runName: meta.name } : {}) },
    resolve(out),
    opts.out === undefined ? { ...opts, runDir } : opts,
  );
}
