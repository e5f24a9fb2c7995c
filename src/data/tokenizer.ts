/**
 * Tokenizers: the byte-level one used by the `tiny`/`small` presets and GPT-2 BPE for
 * `ghost-0.1b`. Both map text to Int32Array token ids and know how many UTF-8 bytes each
 * token stands for, which is what bits-per-byte needs.
 */
import { gpt2Tokenizer } from "./gpt2Tokenizer.js";
import { utf8Encode } from "./utf8.js";

export interface Tokenizer {
  /** Stable name recorded in token caches and run metadata ("bytes", "gpt2"). */
  readonly id: string;
  readonly vocabSize: number;
  encode(text: string): Int32Array;
  /** Invalid UTF-8 (e.g. a multi-byte character cut in half) decodes to U+FFFD. */
  decode(tokens: ArrayLike<number>): string;
  /** UTF-8 bytes this token stands for. Throws RangeError for ids outside the vocabulary. */
  tokenBytes(token: number): number;
}

export type TokenizerName = "bytes" | "gpt2";
export const TOKENIZER_NAMES: readonly TokenizerName[] = ["bytes", "gpt2"];

export function checkTokenId(token: number, vocabSize: number, id: string): void {
  if (!Number.isInteger(token) || token < 0 || token >= vocabSize) {
    throw new RangeError(`token ${token} is outside the ${id} vocabulary [0, ${vocabSize})`);
  }
}

const lenientDecoder = new TextDecoder("utf-8");

class ByteTokenizer implements Tokenizer {
  readonly id = "bytes";
  readonly vocabSize = 256;

  encode(text: string): Int32Array {
    return Int32Array.from(utf8Encode(text));
  }

  decode(tokens: ArrayLike<number>): string {
    const bytes = new Uint8Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      checkTokenId(t, 256, this.id);
      bytes[i] = t;
    }
    return lenientDecoder.decode(bytes);
  }

  tokenBytes(token: number): number {
    checkTokenId(token, 256, this.id);
    return 1;
  }
}

let byteInstance: ByteTokenizer | undefined;

/** Byte-level tokenizer: token = one UTF-8 byte, vocabulary 256. */
export function byteTokenizer(): Tokenizer {
  byteInstance ??= new ByteTokenizer();
  return byteInstance;
}

export { gpt2Tokenizer };

export function getTokenizer(name: TokenizerName): Tokenizer {
  switch (name) {
    case "bytes":
      return byteTokenizer();
    case "gpt2":
      return gpt2Tokenizer();
    default:
      throw new Error(`unknown tokenizer ${JSON.stringify(name)}; expected one of ${TOKENIZER_NAMES.join(", ")}`);
  }
}
