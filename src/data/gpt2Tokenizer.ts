/**
 * GPT-2 BPE (50257 tokens) from js-tiktoken's bundled `gpt2` rank table; works offline.
 *
 * We read the rank table ourselves instead of calling `Tiktoken.encode`: that re-runs byte-pair
 * merging (and rebuilds its regexes) for every piece, which made WikiText-2 valid take seconds.
 * Here the text is pre-tokenized with the same GPT-2 pattern and each distinct piece is merged
 * once and memoized (natural text repeats " the", " of", ... constantly). BPE never merges across
 * pieces and ties go to the leftmost lowest-rank pair as in tiktoken, so the ids are identical to
 * js-tiktoken's (the tests compare them on WikiText-2 valid).
 *
 * "<|endoftext|>" in input text is encoded as ordinary text, so training data can never inject
 * the control token; decode(50256) gives "<|endoftext|>" (13 bytes).
 */
import gpt2Ranks from "js-tiktoken/ranks/gpt2";
import type { Tokenizer } from "./tokenizer.js";

const GPT2_VOCAB = 50257;
/** Distinct pieces kept in the memo before it is reset (bounds memory on huge corpora). */
const PIECE_MEMO_LIMIT = 500_000;

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_VALUE = new Int16Array(128).fill(-1);
for (let i = 0; i < BASE64.length; i++) BASE64_VALUE[BASE64.charCodeAt(i)] = i;

function base64Decode(s: string): Uint8Array {
  const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const ch = s.charCodeAt(i + k);
      const d = ch === 61 /* '=' */ ? 0 : (BASE64_VALUE[ch] ?? -1);
      if (d < 0) throw new Error(`bad base64 in the gpt2 rank table: ${s}`);
      v = (v << 6) | d;
    }
    if (o < out.length) out[o++] = (v >> 16) & 0xff;
    if (o < out.length) out[o++] = (v >> 8) & 0xff;
    if (o < out.length) out[o++] = v & 0xff;
  }
  return out;
}

/** A byte sequence as a string of char codes 0..255: a cheap, exact Map key. */
function byteString(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

class Gpt2Tokenizer implements Tokenizer {
  readonly id = "gpt2";
  readonly vocabSize = GPT2_VOCAB;
  private readonly ranks = new Map<string, number>();
  private readonly bytesOf: Uint8Array[] = new Array<Uint8Array>(GPT2_VOCAB);
  private readonly pattern: RegExp;
  private readonly utf8 = new TextEncoder();
  private readonly utf8Decoder = new TextDecoder("utf-8");
  private memo = new Map<string, number | number[]>();

  constructor() {
    // Table format: one line "<anything> <first rank> <base64 token> <base64 token> ...".
    for (const line of gpt2Ranks.bpe_ranks.split("\n")) {
      if (line.length === 0) continue;
      const fields = line.split(" ");
      const offset = Number.parseInt(fields[1] ?? "", 10);
      for (let i = 2; i < fields.length; i++) {
        const bytes = base64Decode(fields[i]!);
        this.bytesOf[offset + i - 2] = bytes;
        this.ranks.set(byteString(bytes), offset + i - 2);
      }
    }
    for (const [text, rank] of Object.entries(gpt2Ranks.special_tokens)) {
      this.bytesOf[rank] = this.utf8.encode(text);
    }
    for (let t = 0; t < GPT2_VOCAB; t++) {
      if (this.bytesOf[t] === undefined) {
        throw new Error(`js-tiktoken gpt2 rank table has no token ${t} (expected ${GPT2_VOCAB})`);
      }
    }
    for (let b = 0; b < 256; b++) {
      if (!this.ranks.has(String.fromCharCode(b))) {
        throw new Error(`js-tiktoken gpt2 rank table lacks the single byte ${b}`);
      }
    }
    this.pattern = new RegExp(gpt2Ranks.pat_str, "gu");
  }

  /** Byte-pair merging of one piece: repeatedly merge the adjacent pair of lowest rank. */
  private mergePiece(piece: string): number | number[] {
    let ascii = true;
    for (let i = 0; i < piece.length && ascii; i++) ascii = piece.charCodeAt(i) < 0x80;
    const bytes = ascii ? piece : byteString(this.utf8.encode(piece));
    const whole = this.ranks.get(bytes);
    if (whole !== undefined) return whole;
    // bounds[k]..bounds[k+1] is part k; start from single bytes.
    const bounds: number[] = [];
    for (let i = 0; i <= bytes.length; i++) bounds.push(i);
    while (bounds.length > 2) {
      let best = Number.POSITIVE_INFINITY;
      let at = -1;
      for (let k = 0; k + 2 < bounds.length; k++) {
        const r = this.ranks.get(bytes.slice(bounds[k], bounds[k + 2]));
        if (r !== undefined && r < best) {
          best = r;
          at = k;
        }
      }
      if (at < 0) break;
      bounds.splice(at + 1, 1);
    }
    const out: number[] = [];
    for (let k = 0; k + 1 < bounds.length; k++) {
      out.push(this.ranks.get(bytes.slice(bounds[k], bounds[k + 1]))!);
    }
    return out.length === 1 ? out[0]! : out;
  }

  encode(text: string): Int32Array {
    let out = new Int32Array(Math.max(16, Math.ceil(text.length / 3)));
    let n = 0;
    for (const match of text.matchAll(this.pattern)) {
      const piece = match[0];
      let toks = this.memo.get(piece);
      if (toks === undefined) {
        toks = this.mergePiece(piece);
        if (this.memo.size >= PIECE_MEMO_LIMIT) this.memo = new Map();
        this.memo.set(piece, toks);
      }
      const count = typeof toks === "number" ? 1 : toks.length;
      if (n + count > out.length) {
        const grown = new Int32Array(Math.max(out.length * 2, n + count));
        grown.set(out);
        out = grown;
      }
      if (typeof toks === "number") out[n++] = toks;
      else for (const t of toks) out[n++] = t;
    }
    return out.slice(0, n);
  }

  decode(tokens: ArrayLike<number>): string {
    const parts: Uint8Array[] = [];
    let length = 0;
    for (let i = 0; i < tokens.length; i++) {
      const b = this.bytesOf[this.checked(tokens[i]!)]!;
      parts.push(b);
      length += b.length;
    }
    const all = new Uint8Array(length);
    let o = 0;
    for (const b of parts) {
      all.set(b, o);
      o += b.length;
    }
    return this.utf8Decoder.decode(all);
  }

  tokenBytes(token: number): number {
    return this.bytesOf[this.checked(token)]!.length;
  }

  private checked(token: number): number {
    if (!Number.isInteger(token) || token < 0 || token >= GPT2_VOCAB) {
      throw new RangeError(`token ${token} is outside the gpt2 vocabulary [0, ${GPT2_VOCAB})`);
    }
    return token;
  }
}

let instance: Gpt2Tokenizer | undefined;

/** Shared GPT-2 tokenizer (the rank tables are built once, on first use). */
export function gpt2Tokenizer(): Tokenizer {
  instance ??= new Gpt2Tokenizer();
  return instance;
}
