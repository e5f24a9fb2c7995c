/**
 * Evaluation protocol and arithmetic (validation loss, perplexity, bits per byte).
 *
 * Protocol: the evaluation token stream t[0..N) is cut into consecutive windows of T+1 tokens
 * that overlap by exactly one token: window i covers t[i*T .. i*T+T] (inclusive). Inputs are its
 * first T tokens, targets its last T, so every token after t[0] is scored exactly once, each with
 * the context of its own window only (no sliding-window context carry-over). The final window
 * may be shorter (fewer than T+1 tokens, at least 2) and is scored too. t[0] is never scored.
 *
 * Metrics from the sums over all scored targets:
 *   loss = lossSumNats / tokensScored            (mean nats per token)
 *   ppl  = exp(loss)                             (per-token perplexity)
 *   bpb  = lossSumNats / ln 2 / bytesScored      (bits per UTF-8 byte of the scored text)
 * where bytesScored = Σ tokenBytes(target) over the scored targets. bpb compares models with
 * different tokenizers: with the byte tokenizer bytesScored = tokensScored, so bpb = loss / ln 2.
 */
import type { Tokenizer } from "./tokenizer.js";

/** [start, length]: tokens[start .. start+length) form one window; length - 1 targets scored. */
export type EvalWindow = readonly [start: number, length: number];

export interface EvalSums {
  lossSumNats: number;
  tokensScored: number;
  bytesScored: number;
}

export interface EvalMetrics extends EvalSums {
  loss: number;
  ppl: number;
  bpb: number;
}

/**
 * The windows of the protocol above for a stream of `numTokens` tokens and context length `T`.
 * `maxWindows` keeps only the first windows (a quick, still deterministic, partial evaluation).
 */
export function evalWindows(numTokens: number, T: number, maxWindows?: number): EvalWindow[] {
  if (!Number.isInteger(numTokens) || numTokens < 0)
    throw new RangeError(`numTokens must be a non-negative integer, got ${numTokens}`);
  if (!Number.isInteger(T) || T < 1) throw new RangeError(`T must be a positive integer, got ${T}`);
  const limit = maxWindows ?? Number.POSITIVE_INFINITY;
  const out: EvalWindow[] = [];
  for (let start = 0; start + 1 < numTokens && out.length < limit; start += T) {
    out.push([start, Math.min(T + 1, numTokens - start)]);
  }
  return out;
}

/** Number of targets the windows score (Σ (length - 1)). */
export function scoredTokens(windows: readonly EvalWindow[]): number {
  let n = 0;
  for (const [, length] of windows) n += Math.max(0, length - 1);
  return n;
}

/** UTF-8 bytes of the tokens the windows score: every window's tokens except its first. */
export function scoredBytes(tokenizer: Tokenizer, tokens: ArrayLike<number>, windows: readonly EvalWindow[]): number {
  let bytes = 0;
  for (const [start, length] of windows) {
    if (start < 0 || start + length > tokens.length) {
      throw new RangeError(`window [${start}, ${length}] runs past the ${tokens.length} tokens`);
    }
    for (let j = start + 1; j < start + length; j++) bytes += tokenizer.tokenBytes(tokens[j]!);
  }
  return bytes;
}

export function evalMetrics(sums: EvalSums): EvalMetrics {
  const { lossSumNats, tokensScored, bytesScored } = sums;
  if (!(tokensScored > 0) || !(bytesScored > 0)) {
    throw new RangeError(
      `evalMetrics needs tokensScored > 0 and bytesScored > 0 (got ${tokensScored}, ${bytesScored})`,
    );
  }
  const loss = lossSumNats / tokensScored;
  return {
    lossSumNats,
    tokensScored,
    bytesScored,
    loss,
    ppl: Math.exp(loss),
    bpb: lossSumNats / Math.LN2 / bytesScored,
  };
}
