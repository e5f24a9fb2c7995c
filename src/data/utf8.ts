/**
 * Strict UTF-8 helpers shared by the corpus and WikiText loaders.
 *
 * Corpora are decoded with a fatal decoder: silently replacing bad bytes with U+FFFD would
 * change the text (and its byte count, hence bits per byte) without anyone noticing.
 */
import { readFileSync } from "node:fs";

const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** UTF-8 byte length of a string (lone surrogates count as the 3 bytes of U+FFFD). */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * Offset of the first byte that does not start/continue a valid UTF-8 sequence, or -1.
 * Only used to make error messages precise, so clarity beats speed here.
 */
export function firstInvalidUtf8Offset(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    let need: number;
    let min: number;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else return i;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

/** Decodes UTF-8 strictly; `label` names the source in the error (a file path, usually). */
export function decodeUtf8Strict(bytes: Uint8Array, label: string): string {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    const at = firstInvalidUtf8Offset(bytes);
    throw new Error(
      `${label} is not valid UTF-8 text (first invalid byte at offset ${at}). ` +
        `Convert it to UTF-8 first, e.g. \`iconv -f latin1 -t utf-8\`.`,
    );
  }
}

/** Reads a whole file as strict UTF-8 (a leading BOM is dropped). */
export function readUtf8File(path: string): string {
  return decodeUtf8Strict(readFileSync(path), path);
}
