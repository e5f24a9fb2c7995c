/**
 * The sidecar index of an Arrow stream (`metrics.arrows.index` beside `metrics.arrows`): one text
 * line per complete message, appended after the message itself is written:
 *
 *     <offset> <length> <rows> <crc32 of the message bytes, 8 hex> <crc32 of the line before it, 8 hex>\n
 *
 * Why a sidecar: the stream stays an ordinary Arrow IPC stream for pyarrow/polars, while our
 * reader can tell damage from a torn tail. A message covered by the index whose bytes do not match
 * its checksum is damage (refused, never cut); bytes after the last indexed message are a write
 * cut short (or one whole message whose index line was not written yet) and are handled as before.
 * The per-line checksum tells a damaged index line from a damaged message.
 */
import { crc32 } from "node:zlib";
import { RunStoreError } from "./errors.js";

export const INDEX_SUFFIX = ".index";

export interface IndexEntry {
  offset: number;
  length: number;
  rows: number;
  crc: number;
}

const hex = (n: number): string => (n >>> 0).toString(16).padStart(8, "0");

export function messageCrc(bytes: Uint8Array): number {
  return crc32(bytes) >>> 0;
}

export function formatIndexLine(e: IndexEntry): string {
  const body = `${e.offset} ${e.length} ${e.rows} ${hex(e.crc)}`;
  return `${body} ${hex(crc32(body))}\n`;
}

export interface ParsedIndex {
  entries: IndexEntry[];
  /** Bytes of complete, valid lines (where appending continues). */
  validEnd: number;
}

/**
 * Parses index text. A last line without its newline is a write cut short and is ignored; any
 * complete line that fails its own checksum, or that does not continue the previous message,
 * is damage and throws RunStoreError naming the index file and line.
 */
export function parseIndex(text: string, label: string): ParsedIndex {
  const entries: IndexEntry[] = [];
  let pos = 0;
  let line = 0;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    if (nl < 0) break; // torn last line
    line++;
    const raw = text.slice(pos, nl);
    const m = /^(\d+) (\d+) (\d+) ([0-9a-f]{8}) ([0-9a-f]{8})$/.exec(raw);
    const body = m ? `${m[1]} ${m[2]} ${m[3]} ${m[4]}` : "";
    if (!m || hex(crc32(body)) !== m[5]) {
      throw new RunStoreError(
        `${label}${INDEX_SUFFIX} is damaged at line ${line} (byte ${pos}): the line does not match its checksum`,
        {
          file: `${label}${INDEX_SUFFIX}`,
          offset: pos,
        },
      );
    }
    const e: IndexEntry = {
      offset: Number(m[1]),
      length: Number(m[2]),
      rows: Number(m[3]),
      crc: parseInt(m[4]!, 16) >>> 0,
    };
    const expected =
      entries.length === 0 ? 0 : entries[entries.length - 1]!.offset + entries[entries.length - 1]!.length;
    if (e.offset !== expected || e.length <= 0) {
      throw new RunStoreError(
        `${label}${INDEX_SUFFIX} is damaged at line ${line}: message offset ${e.offset}, expected ${expected}`,
        {
          file: `${label}${INDEX_SUFFIX}`,
          offset: pos,
        },
      );
    }
    entries.push(e);
    pos = nl + 1;
  }
  return { entries, validEnd: pos };
}

/**
 * Checks the indexed messages of `bytes` against their checksums. Returns the end of the indexed
 * part. Throws RunStoreError when a message was changed, or when the file is shorter than its
 * index (it was truncated after being written).
 */
export function verifyIndexed(bytes: Uint8Array, entries: readonly IndexEntry[], label: string): number {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.offset + e.length > bytes.length) {
      throw new RunStoreError(
        `${label} is damaged: it has ${bytes.length} bytes but its index lists message ${i} at bytes ${e.offset}..${e.offset + e.length} (the file was truncated after it was written)`,
        { file: label, offset: bytes.length },
      );
    }
    if (messageCrc(bytes.subarray(e.offset, e.offset + e.length)) !== e.crc) {
      throw new RunStoreError(
        `${label} is damaged at byte ${e.offset}: message ${i} (${e.rows} rows, ${e.length} bytes) does not match its checksum in ${label}${INDEX_SUFFIX}; the file changed after it was written`,
        { file: label, offset: e.offset },
      );
    }
  }
  return entries.length > 0 ? entries[entries.length - 1]!.offset + entries[entries.length - 1]!.length : 0;
}
