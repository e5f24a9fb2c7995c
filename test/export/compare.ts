// Shared by the llama.cpp verification test and the notebook: PRIMAL's next-token log-probs on a
// window versus llama.cpp's (through node-llama-cpp) for an exported GGUF file.
import { native, type NativeTrainer } from "../../src/native.js";
import { nativeConfig, type TrainerConfig } from "../../src/config.js";

/** Row-wise log-softmax of logits [T, V]. */
export function logSoftmax(logits: Float32Array, V: number): Float64Array {
  const out = new Float64Array(logits.length);
  for (let r = 0; r < logits.length / V; r++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[r * V + v]!);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[r * V + v]! - mx);
    const lse = mx + Math.log(s);
    for (let v = 0; v < V; v++) out[r * V + v] = logits[r * V + v]! - lse;
  }
  return out;
}

/** A native trainer holding a checkpoint, optionally with activation quantization switched off. */
export function nativeFromCheckpoint(
  config: TrainerConfig,
  checkpoint: string,
  actBits: number | null,
): Promise<NativeTrainer> {
  const nt = new (native().NativeTrainer)(nativeConfig({ ...config, actBits }, "cpu"));
  return nt.load(checkpoint, { otherActBits: true }).then(() => nt);
}

export interface Comparison {
  /** max over positions and vocabulary of |log p_primal - log p_llama|. */
  maxAbsLogProb: number;
  /** Mean next-token loss (nats) on the window: PRIMAL, llama.cpp. */
  lossPrimal: number;
  lossLlama: number;
}

export function compareLogProbs(a: Float64Array, b: Float64Array, window: Int32Array, V: number): Comparison {
  let mx = 0;
  for (let i = 0; i < a.length; i++) mx = Math.max(mx, Math.abs(a[i]! - b[i]!));
  let la = 0;
  let lb = 0;
  const n = window.length - 1;
  for (let t = 0; t < n; t++) {
    la -= a[t * V + window[t + 1]!]!;
    lb -= b[t * V + window[t + 1]!]!;
  }
  return { maxAbsLogProb: mx, lossPrimal: la / n, lossLlama: lb / n };
}

// Minimal shapes of the node-llama-cpp API used here (it is not a dependency, so no types).
interface LlamaModelLike {
  tokenize(text: string): number[];
  createContext(o: Record<string, unknown>): Promise<LlamaContextLike>;
  dispose(): Promise<void>;
}
interface LlamaContextLike {
  getSequence(): LlamaSequenceLike;
  dispose(): Promise<void>;
}
interface LlamaSequenceLike {
  controlledEvaluate(
    input: [number, { generateNext: { probabilities: boolean } }][],
  ): Promise<({ next?: { probabilities?: Map<number, number> } } | undefined)[]>;
  evaluate(tokens: number[], o: Record<string, unknown>): AsyncGenerator<number>;
  clearHistory(): Promise<void>;
}

export class LlamaCppModel {
  private constructor(
    readonly model: LlamaModelLike,
    private readonly ctx: LlamaContextLike,
    private readonly seq: LlamaSequenceLike,
  ) {}

  /**
   * contextSize should exceed the window: node-llama-cpp frees room in a full context before the
   * last token, which changes that position's distribution.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- node-llama-cpp is installed on demand, untyped here
  static async load(lib: any, path: string, contextSize: number): Promise<LlamaCppModel> {
    const llama = await lib.getLlama({ gpu: false, build: "never", logLevel: "error", progressLogs: false });
    const model = (await llama.loadModel({ modelPath: path, gpuLayers: 0 })) as LlamaModelLike;
    const ctx = await model.createContext({ contextSize, batchSize: contextSize, sequences: 1, threads: 1 });
    return new LlamaCppModel(model, ctx, ctx.getSequence());
  }

  tokenize(text: string): number[] {
    return this.model.tokenize(text);
  }

  /** log p(next | prefix) at every position of the window, [T, V]. */
  async logProbs(window: Int32Array, V: number): Promise<Float64Array> {
    await this.seq.clearHistory();
    const res = await this.seq.controlledEvaluate(
      Array.from(window, (t) => [t, { generateNext: { probabilities: true } }]),
    );
    const out = new Float64Array(window.length * V).fill(-Infinity);
    for (let t = 0; t < window.length; t++) {
      const probs = res[t]?.next?.probabilities;
      if (!probs) throw new Error(`llama.cpp returned no probabilities at position ${t}`);
      for (const [tok, p] of probs) out[t * V + tok] = Math.log(p);
    }
    return out;
  }

  /** Greedy continuation of a prompt by n tokens. */
  async greedy(prompt: Int32Array, n: number): Promise<number[]> {
    await this.seq.clearHistory();
    const out: number[] = [];
    for await (const t of this.seq.evaluate(Array.from(prompt), { temperature: 0 })) {
      out.push(t);
      if (out.length >= n) break;
    }
    return out;
  }

  async dispose(): Promise<void> {
    await this.ctx.dispose();
    await this.model.dispose();
  }
}
