import { describe, expect, it } from "vitest";
import { evalMetrics, evalWindows, scoredBytes, scoredTokens } from "../../src/data/evalMetrics.js";
import { byteTokenizer, gpt2Tokenizer, type Tokenizer } from "../../src/data/tokenizer.js";

const TEXT = "naïve café — 東京 🚀 The quick brown fox jumps over the lazy dog. ".repeat(40);

/** Cross-entropy of target under all-zero logits over V classes, computed the long way. */
function uniformLoss(V: number): number {
  const logits = new Float64Array(V); // all zeros
  let max = -Infinity;
  for (const z of logits) max = Math.max(max, z);
  let sum = 0;
  for (const z of logits) sum += Math.exp(z - max);
  const logSumExp = max + Math.log(sum);
  return logSumExp - logits[0]!; // -log softmax(target); any target is the same
}

describe("evalWindows", () => {
  it("cuts windows of T+1 tokens overlapping by one, the last one shorter", () => {
    expect(evalWindows(10, 4)).toEqual([
      [0, 5],
      [4, 5],
      [8, 2],
    ]);
    expect(evalWindows(9, 4)).toEqual([
      [0, 5],
      [4, 5],
    ]);
    expect(evalWindows(2, 4)).toEqual([[0, 2]]);
    expect(evalWindows(1, 4)).toEqual([]);
    expect(evalWindows(0, 4)).toEqual([]);
    expect(evalWindows(10, 4, 2)).toEqual([
      [0, 5],
      [4, 5],
    ]);
    expect(() => evalWindows(10, 0)).toThrow(RangeError);
    expect(() => evalWindows(-1, 4)).toThrow(RangeError);
  });

  it("scores every token after the first exactly once", () => {
    for (let n = 0; n <= 60; n++) {
      for (let T = 1; T <= 9; T++) {
        const windows = evalWindows(n, T);
        const scored = new Int32Array(n);
        const problems: string[] = [];
        let prevEnd = 0;
        for (const [start, length] of windows) {
          if (length < 2 || length > T + 1) problems.push(`length ${length}`);
          if (start > 0 && start !== prevEnd - 1) problems.push(`start ${start} does not overlap by one`);
          prevEnd = start + length;
          for (let j = start + 1; j < start + length; j++) scored[j]!++;
        }
        if (n > 0 && scored[0] !== 0) problems.push("token 0 scored");
        for (let j = 1; j < n; j++) if (scored[j] !== 1) problems.push(`token ${j} scored ${scored[j]} times`);
        expect(problems, `n=${n} T=${T}`).toEqual([]);
        expect(scoredTokens(windows)).toBe(Math.max(0, n - 1));
      }
    }
  });
});

describe("scoredBytes", () => {
  it("counts the bytes of scored tokens: all but the first", () => {
    const bytes = byteTokenizer();
    const bt = bytes.encode(TEXT);
    expect(scoredBytes(bytes, bt, evalWindows(bt.length, 64))).toBe(bt.length - 1);

    const gpt2 = gpt2Tokenizer();
    const gt = gpt2.encode(TEXT);
    expect(scoredBytes(gpt2, gt, evalWindows(gt.length, 16))).toBe(Buffer.byteLength(TEXT) - gpt2.tokenBytes(gt[0]!));
  });

  it("rejects windows beyond the tokens", () => {
    expect(() => scoredBytes(byteTokenizer(), [1, 2, 3], [[2, 5]])).toThrow(RangeError);
  });
});

describe("evalMetrics", () => {
  it.each([
    ["bytes", byteTokenizer()],
    ["gpt2", gpt2Tokenizer()],
  ] as [string, Tokenizer][])("uniform logits over V give ln V, V and log2(V)·tokens/bytes (%s)", (_, tok) => {
    const V = tok.vocabSize;
    const tokens = tok.encode(TEXT);
    const windows = evalWindows(tokens.length, 32);
    const tokensScored = scoredTokens(windows);
    const bytesScored = scoredBytes(tok, tokens, windows);
    const perToken = uniformLoss(V);
    let lossSumNats = 0;
    for (const [, length] of windows) for (let j = 1; j < length; j++) lossSumNats += perToken;
    const m = evalMetrics({ lossSumNats, tokensScored, bytesScored });
    expect(m.loss).toBeCloseTo(Math.log(V), 10);
    expect(m.ppl / V).toBeCloseTo(1, 10);
    expect(m.bpb).toBeCloseTo((Math.log2(V) * tokensScored) / bytesScored, 10);
    if (tok.id === "bytes") expect(m.bpb).toBeCloseTo(8, 10);
    expect(m).toMatchObject({ lossSumNats, tokensScored, bytesScored });
  });

  it("works on a hand-computed case and refuses empty sums", () => {
    const m = evalMetrics({ lossSumNats: 6, tokensScored: 3, bytesScored: 12 });
    expect(m.loss).toBe(2);
    expect(m.ppl).toBeCloseTo(Math.exp(2), 12);
    expect(m.bpb).toBeCloseTo(6 / Math.LN2 / 12, 12);
    expect(() => evalMetrics({ lossSumNats: 0, tokensScored: 0, bytesScored: 0 })).toThrow(RangeError);
  });
});
