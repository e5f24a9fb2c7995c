/**
 * Checksummed JSONL records (events.jsonl, samples.jsonl). Each line is one JSON object whose last
 * field is `"crc32"`: the CRC-32 (zlib polynomial, 8 hex digits) of the line's JSON without that
 * field, i.e. of `JSON.stringify(record)`. The line stays plain JSON for every JSONL reader (the
 * checksum is one more column), while our reader tells a damaged record from a good one:
 *
 *     {"step":3,"time":"…","kind":"checkpoint","path":"…","crc32":"5f0c3a1e"}
 *
 * Files written before records carried checksums read as before: lines without one are accepted
 * while no checksummed line precedes them (an old run resumed by this version has an unchecked
 * prefix, then checked lines).
 */
import { crc32 } from "node:zlib";
import { RunStoreError } from "./errors.js";

export const CRC_FIELD = "crc32";
const TAIL_RE = /(,?)"crc32":"([^"]*)"\}$/;

const hex = (n: number): string => (n >>> 0).toString(16).padStart(8, "0");

/** One record as a line (with its newline). A caller field named `crc32` is dropped (reserved). */
export function formatRecord(record: Record<string, unknown>): string {
  const { [CRC_FIELD]: _reserved, ...rest } = record;
  const json = JSON.stringify(rest);
  const sum = hex(crc32(json));
  return json === "{}" ? `{"${CRC_FIELD}":"${sum}"}\n` : `${json.slice(0, -1)},"${CRC_FIELD}":"${sum}"}\n`;
}

export type LineCheck =
  | { kind: "checked"; record: Record<string, unknown> }
  | { kind: "unchecked"; record: Record<string, unknown> }
  | { kind: "damaged"; why: string }
  /** No checksum and not a JSON object (an old file's bad line). */
  | { kind: "invalid"; why: string };

/** True when `key` is "crc32" with exactly one bit flipped (a damaged checksum field name). */
function nearCrcKey(key: string): boolean {
  if (key.length !== CRC_FIELD.length || key === CRC_FIELD) return false;
  let diff = 0;
  for (let i = 0; i < key.length; i++) {
    const x = key.charCodeAt(i) ^ CRC_FIELD.charCodeAt(i);
    if (x === 0) continue;
    if ((x & (x - 1)) !== 0 || ++diff > 1) return false;
  }
  return diff === 1;
}

/** Classifies one line (without its newline). */
export function checkLine(line: string): LineCheck {
  const m = TAIL_RE.exec(line);
  if (m) {
    const body = `${line.slice(0, m.index)}}`;
    if (!/^[0-9a-f]{8}$/.test(m[2]!) || hex(crc32(body)) !== m[2])
      return { kind: "damaged", why: "the record does not match its checksum" };
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return { kind: "damaged", why: "the record is not valid JSON" };
    }
    if (value === null || typeof value !== "object" || Array.isArray(value))
      return { kind: "damaged", why: "the record is not a JSON object" };
    const { [CRC_FIELD]: _sum, ...record } = value as Record<string, unknown>;
    return { kind: "checked", record };
  }
  const claimsSum = line.includes(`"${CRC_FIELD}":`);
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return claimsSum
      ? { kind: "damaged", why: "the record is not valid JSON" }
      : { kind: "invalid", why: "is not valid JSON" };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value))
    return claimsSum
      ? { kind: "damaged", why: "the record is not a JSON object" }
      : { kind: "invalid", why: "is not a JSON object" };
  const keys = Object.keys(value);
  const last = keys[keys.length - 1];
  if (claimsSum || (last !== undefined && nearCrcKey(last)))
    return { kind: "damaged", why: "its checksum field is damaged" };
  return { kind: "unchecked", record: value as Record<string, unknown> };
}

export interface JsonlScan {
  records: Record<string, unknown>[];
  /** Problems of unchecked lines (old files), which are skipped. */
  warnings: string[];
  /** Byte length of the complete lines (where an unterminated last line starts). */
  completeBytes: number;
  /** The unterminated last line, if any ("" when the file ends with a newline). */
  tail: string;
  /** Whether `tail` is a whole checksummed record that only lacks its newline. */
  tailIsRecord: boolean;
}

/** Reference to a damaged line, for RunStoreError and repair. */
export interface JsonlDamage {
  line: number;
  offset: number;
  why: string;
}

/** Splits bytes at newlines: the complete lines with their byte offsets, and the unterminated rest. */
function splitLines(bytes: Uint8Array): { lines: { text: string; offset: number }[]; tailOffset: number } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lines: { text: string; offset: number }[] = [];
  let start = 0;
  for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
    lines.push({ text: buf.toString("utf8", start, nl), offset: start });
    start = nl + 1;
  }
  return { lines, tailOffset: start };
}

/**
 * Reads JSONL bytes. Damage (a checksummed record that does not verify, or a line without a
 * checksum after checksummed ones) is collected into `damage` when given, else thrown as
 * RunStoreError naming `label`, the line and its byte offset. An unterminated last line is
 * reported in `tail` and kept only when it is a whole record.
 */
export function scanJsonl(bytes: Uint8Array, label: string, damage?: JsonlDamage[]): JsonlScan {
  const records: Record<string, unknown>[] = [];
  const warnings: string[] = [];
  const { lines, tailOffset } = splitLines(bytes);
  const tail = Buffer.from(bytes.buffer, bytes.byteOffset + tailOffset, bytes.byteLength - tailOffset).toString("utf8");
  const anyChecked = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes(`"${CRC_FIELD}":`);
  let sawChecked = false;
  const fail = (line: number, at: number, why: string) => {
    const d = { line, offset: at, why };
    if (damage) damage.push(d);
    else
      throw new RunStoreError(`${label} is damaged at line ${line} (byte ${at}): ${why}`, { file: label, offset: at });
  };
  lines.forEach(({ text: line, offset: at }, i) => {
    if (line.trim() === "") return;
    const c = checkLine(line);
    if (c.kind === "checked") {
      sawChecked = true;
      records.push(c.record);
    } else if (c.kind === "damaged") {
      fail(i + 1, at, c.why);
    } else if (c.kind === "unchecked" && !sawChecked) {
      records.push(c.record);
    } else if (c.kind === "unchecked") {
      fail(i + 1, at, "the record has no checksum (records after a checksummed one must have one)");
    } else if (sawChecked) {
      fail(i + 1, at, `the record ${c.why}`);
    } else {
      warnings.push(`${label} line ${i + 1} ${c.why}; skipped`);
    }
  });
  let tailIsRecord = false;
  if (tail.trim() !== "") {
    const c = checkLine(tail);
    // A complete record without its newline is kept; anything else is a write cut short.
    if (c.kind === "checked" || (c.kind === "unchecked" && !anyChecked)) {
      tailIsRecord = true;
      records.push(c.record);
    }
  }
  return { records, warnings, completeBytes: tailOffset, tail, tailIsRecord };
}
