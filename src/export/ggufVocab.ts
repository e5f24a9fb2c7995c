/**
 * The tokenizer that travels in the GGUF file, as llama.cpp's byte-level BPE ("gpt2" model)
 * reads it: token strings in GPT-2's printable byte alphabet, token types and merges.
 *
 * - gpt2 presets: the GPT-2 vocabulary (50257) and its 50000 merges, recovered from js-tiktoken's
 *   rank table (the same table PRIMAL tokenizes with): merge k produces token 256 + k, and its two
 *   halves are what byte-pair merging of the token's bytes with lower ranks ends with.
 * - byte presets: 256 tokens, token b = the byte b, and no merges, so llama.cpp's BPE stops at
 *   single bytes and yields exactly PRIMAL's byte ids.
 * Model vocabularies larger than the tokenizer's get unused padding tokens.
 */
import gpt2Ranks from "js-tiktoken/ranks/gpt2";

/** llama.cpp token types. */
export enum TokenType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export interface GGUFVocab {
  /** tokenizer.ggml.model */
  model: "gpt2";
  /** tokenizer.ggml.pre */
  pre: string;
  tokens: string[];
  types: number[];
  merges: string[];
  bos?: number;
  eos?: number;
}

let byteAlphabet: string[] | undefined;

/**
 * GPT-2's reversible byte -> printable character map: printable Latin-1 bytes map to
 * themselves, the other 68 bytes to U+0100 + k in byte order.
 */
export function byteToUnicode(): string[] {
  if (byteAlphabet) return byteAlphabet;
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(printable(b) ? b : 256 + extra++);
  byteAlphabet = out;
  return out;
}

function asText(bytes: Uint8Array): string {
  const alpha = byteToUnicode();
  let s = "";
  for (const b of bytes) s += alpha[b]!;
  return s;
}

function pad(v: GGUFVocab, vocab: number): GGUFVocab {
  if (vocab < v.tokens.length)
    throw new Error(`the model vocabulary (${vocab}) is smaller than its tokenizer's (${v.tokens.length})`);
  for (let i = v.tokens.length; i < vocab; i++) {
    v.tokens.push(`[PAD${i}]`);
    v.types.push(TokenType.UNUSED);
  }
  return v;
}

/** 256 byte tokens (id = byte value), no merges. */
export function byteVocab(vocab = 256): GGUFVocab {
  const tokens = byteToUnicode().slice();
  return pad(
    {
      model: "gpt2",
      pre: "default",
      tokens,
      types: tokens.map(() => TokenType.NORMAL),
      merges: [],
      // No end-of-text token exists among bytes; NUL never occurs in text.
      bos: 0,
      eos: 0,
    },
    vocab,
  );
}

/** The GPT-2 vocabulary and merges, from js-tiktoken's `gpt2` ranks. */
export function gpt2Vocab(vocab = 50257): GGUFVocab {
  const bytesOf: Uint8Array[] = [];
  const rank = new Map<string, number>();
  const key = (b: Uint8Array) => Buffer.from(b).toString("latin1");
  for (const line of gpt2Ranks.bpe_ranks.split("\n")) {
    if (!line) continue;
    const fields = line.split(" ");
    const first = Number.parseInt(fields[1] ?? "", 10);
    for (let i = 2; i < fields.length; i++) {
      const b = new Uint8Array(Buffer.from(fields[i]!, "base64"));
      bytesOf[first + i - 2] = b;
      rank.set(key(b), first + i - 2);
    }
  }
  const specials = Object.entries(gpt2Ranks.special_tokens) as [string, number][];
  const n = Math.max(bytesOf.length, ...specials.map(([, r]) => r + 1));
  const tokens = new Array<string>(n);
  const types = new Array<number>(n).fill(TokenType.NORMAL);
  for (let id = 0; id < bytesOf.length; id++) {
    const b = bytesOf[id];
    if (!b) throw new Error(`gpt2 rank table: token ${id} missing`);
    tokens[id] = asText(b);
  }
  for (const [text, id] of specials) {
    tokens[id] = text;
    types[id] = TokenType.CONTROL;
  }
  // Merges, in rank order: token r (r >= 256) is the merge of the two pieces that byte-pair
  // merging of its own bytes, using only ranks below r, ends with.
  const merges: string[] = [];
  for (let r = 0; r < bytesOf.length; r++) {
    const b = bytesOf[r]!;
    if (b.length < 2) continue;
    let parts: string[] = Array.from(b, (x) => String.fromCharCode(x));
    for (;;) {
      let best = -1;
      let bestRank = r;
      for (let i = 0; i + 1 < parts.length; i++) {
        const m = rank.get(parts[i]! + parts[i + 1]!);
        if (m !== undefined && m < bestRank) {
          bestRank = m;
          best = i;
        }
      }
      if (best < 0) break;
      parts = [...parts.slice(0, best), parts[best]! + parts[best + 1]!, ...parts.slice(best + 2)];
    }
    if (parts.length !== 2) throw new Error(`gpt2 rank table: token ${r} is not the merge of two lower-ranked tokens`);
    const text = (s: string) => asText(Uint8Array.from(s, (c) => c.charCodeAt(0)));
    merges.push(`${text(parts[0]!)} ${text(parts[1]!)}`);
  }
  const eot = gpt2Ranks.special_tokens["<|endoftext|>"];
  return pad(
    { model: "gpt2", pre: "gpt-2", tokens, types, merges, ...(eot !== undefined ? { bos: eot, eos: eot } : {}) },
    vocab,
  );
}
