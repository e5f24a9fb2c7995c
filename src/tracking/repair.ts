/**
 * `primal repair RUN`: makes a run with a damaged stream readable and resumable again, losing
 * nothing. A damaged Arrow stream (a message or index line that fails its checksum, bytes that
 * cannot be a stream) is rebuilt from its intact prefix, the messages before the first damage; a
 * damaged JSONL file keeps every record that verifies. Since rows after the damage are gone from
 * the rebuilt stream, checkpoints newer than the last intact row are set aside too, so the next
 * `resume` continues from a checkpoint at or before it and trains the lost steps again (the same
 * rows, bit for bit, on the same thread count). Every original file and every set-aside checkpoint
 * is moved to `<run>/repair-<time>/`, never deleted, and a "repair" event records what was done.
 */
import { renameSync } from "node:fs";
import { join, resolve } from "node:path";
import { checkArrowStream, readArrowStreamBytes } from "./arrowStream.js";
import { RunStoreError, describeError } from "./errors.js";
import { RUN_FILES, listCheckpoints, readRunFile } from "./files.js";
import { ensureDir, freshName, fsyncDir, moveInto, tempPath, writeFileAtomic } from "./guardedWrite.js";
import { formatRecord, scanJsonl, type JsonlDamage } from "./jsonlRecords.js";
import { RunLock } from "./runLock.js";
import { RunStore, readRunMeta, type RunStatus } from "./runStore.js";
import { layersSchema, metricsSchema } from "./schemas.js";
import { INDEX_SUFFIX, formatIndexLine, messageCrc, parseIndex, type IndexEntry } from "./streamIndex.js";
import { scanStream } from "./ipcScan.js";
import type { Schema } from "apache-arrow";

export interface StreamRepair {
  file: string;
  /** Why the file was rebuilt (the reader's error). */
  damage: string;
  /** Bytes of the original kept as the intact prefix. */
  keptBytes: number;
  originalBytes: number;
  /** Rows in the intact prefix; for Arrow streams the step of its last row (null: no rows). */
  keptRows: number;
  lastStep?: number | null;
}

export interface RepairReport {
  run: string;
  /** False when nothing was damaged (and nothing was changed). */
  repaired: boolean;
  /** Where the originals and set-aside checkpoints went. */
  setAside?: string;
  streams: StreamRepair[];
  /** Checkpoints moved aside because they are newer than the last intact row. */
  checkpointsSetAside: string[];
  /** The checkpoint a resume continues from after the repair, if any. */
  resumeFrom: string | null;
  /** Steps whose rows are missing and that no remaining checkpoint can train again. */
  gap?: { fromStep: number; toStep: number };
}

/** Where the intact part of an Arrow stream ends, and the index entries that cover it. */
function arrowPrefix(
  bytes: Uint8Array,
  indexText: string | null,
  label: string,
): { end: number; entries: IndexEntry[] } {
  if (indexText !== null && indexText !== "") {
    let entries: IndexEntry[];
    try {
      entries = parseIndex(indexText, label).entries;
    } catch (e) {
      // Lines before the first damaged one are still verified by their own checksums.
      const at = e instanceof RunStoreError && e.offset !== undefined ? e.offset : 0;
      entries = parseIndex(indexText.slice(0, at), label).entries;
    }
    const good: IndexEntry[] = [];
    for (const e of entries) {
      if (e.offset + e.length > bytes.length) break;
      if (messageCrc(bytes.subarray(e.offset, e.offset + e.length)) !== e.crc) break;
      good.push(e);
    }
    const end = good.length > 0 ? good[good.length - 1]!.offset + good[good.length - 1]!.length : 0;
    return { end, entries: good };
  }
  // A stream written before the index existed: complete messages up to the first corrupt one.
  let end = bytes.length;
  for (;;) {
    try {
      const scan = scanStream(bytes.subarray(0, end), label);
      readArrowStreamBytes(bytes.subarray(0, scan.validEnd), { label });
      const entries = scan.messages.map((m) => ({
        offset: m.start,
        length: m.end - m.start,
        rows: m.rows,
        crc: messageCrc(bytes.subarray(m.start, m.end)),
      }));
      return { end: scan.validEnd, entries };
    } catch (e) {
      const at = e instanceof RunStoreError && e.offset !== undefined ? e.offset : 0;
      if (at >= end || at === 0) return { end: 0, entries: [] };
      end = at;
    }
  }
}

interface PlannedStream {
  report: StreamRepair;
  bytes: Uint8Array;
  index: string;
}

function inspectArrow(dir: string, file: string, schema: Schema): PlannedStream | null {
  const path = join(dir, file);
  const bytes = readRunFile(path);
  if (bytes === null) return null;
  const indexText = readRunFile(`${path}${INDEX_SUFFIX}`)?.toString("utf8") ?? null;
  let damage: string | null = null;
  try {
    checkArrowStream(path);
    readArrowStreamBytes(bytes, { label: file, schema, ...(indexText !== null ? { index: indexText } : {}) });
  } catch (e) {
    if (!(e instanceof RunStoreError)) throw e;
    damage = e.message;
  }
  if (damage === null) return null;
  const { end, entries } = arrowPrefix(bytes, indexText, file);
  const kept = bytes.subarray(0, end);
  const table = readArrowStreamBytes(kept, { label: file, schema });
  const steps = table.getChild("step");
  return {
    report: {
      file,
      damage,
      keptBytes: end,
      originalBytes: bytes.length,
      keptRows: table.numRows,
      lastStep: table.numRows > 0 ? Number(steps!.get(table.numRows - 1)) : null,
    },
    bytes: kept,
    index: entries.map(formatIndexLine).join(""),
  };
}

interface PlannedJsonl {
  report: StreamRepair;
  text: string;
}

function inspectJsonl(dir: string, file: string): PlannedJsonl | null {
  const bytes = readRunFile(join(dir, file));
  if (bytes === null) return null;
  const damage: JsonlDamage[] = [];
  const scan = scanJsonl(bytes, file, damage);
  if (damage.length === 0) return null;
  // Every record that verifies is kept (written again with its checksum); the damaged lines and
  // an unfinished last line stay in the set-aside original.
  const text = scan.records.map((r) => formatRecord(r)).join("");
  return {
    report: {
      file,
      damage: damage.map((d) => `line ${d.line} (byte ${d.offset}): ${d.why}`).join("; "),
      keptBytes: Buffer.byteLength(text),
      originalBytes: bytes.length,
      keptRows: scan.records.length,
    },
    text,
  };
}

/**
 * Repairs the run in `dir` (see the top of this file). Takes the run's lock; a run that is not
 * damaged is left exactly as it is (`repaired: false`). Throws RunStoreError when run.json cannot
 * be read (a repair needs the run's identity) or the run is being written.
 */
export function repairRun(dir: string): RepairReport {
  const abs = resolve(dir);
  const lock = RunLock.acquire(abs);
  let store: RunStore | undefined;
  try {
    const meta = readRunMeta(abs);
    // Checkpoints may be moved below: never out of (or into) a folder that a link redirects.
    ensureDir(abs, join(abs, RUN_FILES.checkpoints));
    const arrows = [
      inspectArrow(abs, RUN_FILES.metrics, metricsSchema),
      inspectArrow(abs, RUN_FILES.layers, layersSchema),
    ].filter((p): p is PlannedStream => p !== null);
    const jsonl = [inspectJsonl(abs, RUN_FILES.events), inspectJsonl(abs, RUN_FILES.samples)].filter(
      (p): p is PlannedJsonl => p !== null,
    );
    const checkpoints = listCheckpoints(abs);
    const report: RepairReport = {
      run: abs,
      repaired: false,
      streams: [...arrows.map((a) => a.report), ...jsonl.map((j) => j.report)],
      checkpointsSetAside: [],
      resumeFrom: checkpoints.length > 0 ? checkpoints[checkpoints.length - 1]!.path : null,
    };
    if (arrows.length === 0 && jsonl.length === 0) {
      lock.release();
      return report;
    }
    // The newest step every rebuilt stream still has; checkpoints after it would skip the rows
    // lost with the damage, so they are set aside and the lost steps are trained again.
    let lastIntact = Infinity;
    for (const a of arrows) lastIntact = Math.min(lastIntact, a.report.lastStep ?? 0);
    const later = checkpoints.filter((c) => c.step > lastIntact);
    const earlier = checkpoints.filter((c) => c.step <= lastIntact);
    const rollBack = later.length > 0 && earlier.length > 0;
    if (later.length > 0 && earlier.length === 0) report.gap = { fromStep: lastIntact + 1, toStep: later[0]!.step };

    const aside = join(abs, freshName(abs, "repair"));
    report.setAside = aside;
    // Rebuilt files go to temporary names first; then each original is moved aside and its
    // replacement renamed into place (a kill in between loses nothing: the original is aside).
    const place = (file: string, bytes: Uint8Array | string) => {
      const target = join(abs, file);
      const tmp = tempPath(target);
      writeFileAtomic(tmp, bytes);
      if (readRunFile(target) !== null) moveInto(abs, target, aside);
      renameInto(tmp, target);
    };
    for (const a of arrows) {
      place(a.report.file, a.bytes);
      place(`${a.report.file}${INDEX_SUFFIX}`, a.index);
    }
    for (const j of jsonl) place(j.report.file, j.text);
    if (rollBack) {
      for (const c of later) report.checkpointsSetAside.push(moveInto(abs, c.path, join(aside, "checkpoints")));
      fsyncDir(join(abs, RUN_FILES.checkpoints));
      report.resumeFrom = earlier[earlier.length - 1]!.path;
    }
    fsyncDir(abs);
    report.repaired = true;

    store = RunStore.open(abs, { lock });
    const newest = listCheckpoints(abs).at(-1);
    store.event("repair", {
      step: newest?.step ?? 0,
      setAside: aside,
      streams: report.streams,
      ...(report.checkpointsSetAside.length > 0 ? { checkpointsSetAside: report.checkpointsSetAside } : {}),
      resumeFrom: report.resumeFrom,
      ...(report.gap ? { gap: report.gap } : {}),
    });
    // A run that went back to an older checkpoint is no longer where run.json says it ended.
    const status: RunStatus = rollBack && meta.status !== "failed" ? "stopped" : meta.status;
    store.setStatus(status, rollBack ? (newest?.step ?? 0) : meta.step);
    store.close();
    store = undefined;
    return report;
  } catch (e) {
    try {
      store?.close();
    } finally {
      lock.release();
    }
    throw e instanceof RunStoreError
      ? e
      : new RunStoreError(`repair of ${abs} failed: ${describeError(e)}`, { cause: e });
  }
}

/** Renames a temporary file of the run over its final name (replacing, never writing through, a link). */
function renameInto(tmp: string, target: string): void {
  try {
    renameSync(tmp, target);
  } catch (e) {
    throw new RunStoreError(`cannot move ${tmp} to ${target}: ${describeError(e)}`, { file: target, cause: e });
  }
}
