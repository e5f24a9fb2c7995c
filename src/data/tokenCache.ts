/**
 * Binary token cache: a corpus is tokenized once and the ids are memory-loaded afterwards.
 *
 * File `<cacheDir>/tokens/<name>.<tokenizer id>.tok`, little-endian throughout:
 *
 *   offset size  field
 *   0      8     magic "PRMLTOK1"
 *   8      4     u32 format version (1)
 *   12     4     u32 header length H in bytes (= payload offset, a multiple of 8)
 *   16     4     u32 bytes per token: 2 (uint16, used when vocabSize <= 65536) or 4 (int32)
 *   20     4     u32 tokenizer vocabulary size
 *   24     8     u64 token count N
 *   32     32    sha256 of the source text's UTF-8 bytes
 *   64     32    sha256 of the payload bytes
 *   96     2     u16 tokenizer id length L, then L bytes of UTF-8 tokenizer id
 *   ...          zero padding up to H - 32
 *   H-32   32    sha256 of header bytes [0, H-32)
 *   H      N*w   the tokens
 *
 * A file is used only if every field checks out (magic, version, header digest, tokenizer id and
 * vocabulary, source digest, exact file size, payload digest); anything else — a different
 * source or tokenizer, truncation, a flipped bit — makes it be rebuilt, never trusted. Files are
 * written to a temp name and renamed into place, so readers never see a half-written cache.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { endianness } from "node:os";
import { defaultCacheDir } from "./paths.js";
import type { Tokenizer } from "./tokenizer.js";
import { utf8Encode } from "./utf8.js";

export const TOKEN_CACHE_MAGIC = "PRMLTOK1";
export const TOKEN_CACHE_VERSION = 1;
const FIXED_HEADER = 98;
const DIGEST = 32;

export interface TokenCacheRequest {
  text: string;
  tokenizer: Tokenizer;
  /** Default: `$PRIMAL_CACHE_DIR`, else `$XDG_CACHE_HOME/primal` or `~/.cache/primal`. */
  cacheDir?: string;
  /** Cache entry name, e.g. "sotu-train"; letters, digits, "-", "_" and "." are kept. */
  name: string;
}

export interface TokenCacheResult {
  tokens: Int32Array;
  path: string;
  /** true when the cache file was valid and used; false when the text was tokenized. */
  reused: boolean;
  /** Why it was (re)built, when it was: "missing", "source changed", "corrupt: ..." and so on. */
  rebuildReason?: string;
  sourceSha256: string;
}

function sha256(data: Uint8Array): Buffer {
  return createHash("sha256").update(data).digest();
}

export function tokenCachePath(cacheDir: string, name: string, tokenizerId: string): string {
  const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, "_");
  return join(cacheDir, "tokens", `${safe(name)}.${safe(tokenizerId)}.tok`);
}

function bytesPerToken(vocabSize: number): 2 | 4 {
  return vocabSize <= 65536 ? 2 : 4;
}

/** Serializes tokens into the cache format described at the top of this file. */
export function encodeTokenCache(tokens: Int32Array, tokenizer: Tokenizer, sourceSha: Uint8Array): Uint8Array {
  const idBytes = utf8Encode(tokenizer.id);
  if (idBytes.length > 0xffff) throw new Error("tokenizer id too long for the token cache");
  const width = bytesPerToken(tokenizer.vocabSize);
  const headerLen = Math.ceil((FIXED_HEADER + idBytes.length + DIGEST) / 8) * 8;
  const out = new Uint8Array(headerLen + tokens.length * width);
  const view = new DataView(out.buffer);
  const payload = out.subarray(headerLen);
  const pview = new DataView(out.buffer, headerLen);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t < 0 || t >= tokenizer.vocabSize) {
      throw new RangeError(`token ${t} at ${i} is outside the ${tokenizer.id} vocabulary`);
    }
    if (width === 2) pview.setUint16(i * 2, t, true);
    else pview.setInt32(i * 4, t, true);
  }
  out.set(utf8Encode(TOKEN_CACHE_MAGIC), 0);
  view.setUint32(8, TOKEN_CACHE_VERSION, true);
  view.setUint32(12, headerLen, true);
  view.setUint32(16, width, true);
  view.setUint32(20, tokenizer.vocabSize, true);
  view.setBigUint64(24, BigInt(tokens.length), true);
  out.set(sourceSha, 32);
  out.set(sha256(payload), 64);
  view.setUint16(96, idBytes.length, true);
  out.set(idBytes, FIXED_HEADER);
  out.set(sha256(out.subarray(0, headerLen - DIGEST)), headerLen - DIGEST);
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/**
 * Parses and verifies a cache file's bytes; returns the tokens or the reason it is unusable.
 * Exported for tests and tools; loadOrBuildTokens is the normal entry point.
 */
export function decodeTokenCache(
  file: Uint8Array,
  tokenizer: Tokenizer,
  sourceSha: Uint8Array,
): { tokens: Int32Array } | { reason: string } {
  if (file.length < FIXED_HEADER + DIGEST) return { reason: "corrupt: shorter than a header" };
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (Buffer.from(file.subarray(0, 8)).toString("latin1") !== TOKEN_CACHE_MAGIC) {
    return { reason: "corrupt: bad magic" };
  }
  const version = view.getUint32(8, true);
  if (version !== TOKEN_CACHE_VERSION) return { reason: `format version ${version} (want ${TOKEN_CACHE_VERSION})` };
  const headerLen = view.getUint32(12, true);
  if (headerLen < FIXED_HEADER + DIGEST || headerLen % 8 !== 0 || headerLen > file.length) {
    return { reason: "corrupt: bad header length" };
  }
  if (!equalBytes(sha256(file.subarray(0, headerLen - DIGEST)), file.subarray(headerLen - DIGEST, headerLen))) {
    return { reason: "corrupt: header checksum mismatch" };
  }
  const idLen = view.getUint16(96, true);
  const id = Buffer.from(file.subarray(FIXED_HEADER, FIXED_HEADER + idLen)).toString("utf8");
  const width = view.getUint32(16, true);
  const vocab = view.getUint32(20, true);
  if (id !== tokenizer.id || vocab !== tokenizer.vocabSize || width !== bytesPerToken(vocab)) {
    return { reason: `tokenizer changed (cache: ${id}/${vocab}, now: ${tokenizer.id}/${tokenizer.vocabSize})` };
  }
  if (!equalBytes(file.subarray(32, 64), sourceSha)) return { reason: "source changed" };
  const count = view.getBigUint64(24, true);
  if (BigInt(file.length) !== BigInt(headerLen) + count * BigInt(width)) {
    return { reason: "corrupt: file size does not match the token count (truncated?)" };
  }
  const payload = file.subarray(headerLen);
  if (!equalBytes(sha256(payload), file.subarray(64, 96))) return { reason: "corrupt: payload checksum mismatch" };
  const n = Number(count);
  let tokens: Int32Array;
  if (endianness() === "LE") {
    // Copy into a fresh, aligned buffer; the file's buffer may start at any offset.
    const aligned = new Uint8Array(payload).buffer;
    tokens = width === 2 ? Int32Array.from(new Uint16Array(aligned, 0, n)) : new Int32Array(aligned, 0, n);
  } else {
    const pview = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    tokens = new Int32Array(n);
    for (let i = 0; i < n; i++) tokens[i] = width === 2 ? pview.getUint16(i * 2, true) : pview.getInt32(i * 4, true);
  }
  for (let i = 0; i < n; i++) {
    if (tokens[i]! >= vocab || tokens[i]! < 0) return { reason: "corrupt: token outside the vocabulary" };
  }
  return { tokens };
}

function writeAtomically(path: string, data: Uint8Array): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Like loadOrBuildTokens, but also says where the cache is and whether it was reused. */
export function loadOrBuildTokenCache(req: TokenCacheRequest): TokenCacheResult {
  const cacheDir = req.cacheDir ?? defaultCacheDir();
  const path = tokenCachePath(cacheDir, req.name, req.tokenizer.id);
  const sourceSha = sha256(utf8Encode(req.text));
  const sourceSha256 = sourceSha.toString("hex");
  let rebuildReason = "missing";
  if (existsSync(path)) {
    let file: Uint8Array | undefined;
    try {
      file = readFileSync(path);
    } catch (err) {
      rebuildReason = `unreadable: ${(err as Error).message}`;
    }
    if (file) {
      const got = decodeTokenCache(file, req.tokenizer, sourceSha);
      if ("tokens" in got) return { tokens: got.tokens, path, reused: true, sourceSha256 };
      rebuildReason = got.reason;
    }
  }
  const tokens = req.tokenizer.encode(req.text);
  mkdirSync(join(cacheDir, "tokens"), { recursive: true });
  writeAtomically(path, encodeTokenCache(tokens, req.tokenizer, sourceSha));
  return { tokens, path, reused: false, rebuildReason, sourceSha256 };
}

/** Tokens of `text`, from the cache when it is valid for this text and tokenizer. */
export function loadOrBuildTokens(req: TokenCacheRequest): Int32Array {
  return loadOrBuildTokenCache(req).tokens;
}
