/**
 * Tags and notes of a run: `annotations.jsonl`, one JSON object per line, appended by whoever
 * annotates the run (the trainer, `primal tag`, `primal note`), also while it trains. They live
 * beside run.json rather than in it because run.json is rewritten by the writer: an append-only
 * file written with one O_APPEND write per line needs no coordination between processes.
 *
 *   {"time": ISO, "kind": "tag", "tag": "baseline"}
 *   {"time": ISO, "kind": "untag", "tag": "baseline"}
 *   {"time": ISO, "kind": "note", "text": "lr too high?", "step": 120}
 */
import { closeSync, constants, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { formatRecord } from "./jsonlRecords.js";
import { RunStoreError, describeError } from "./errors.js";
import { RUN_FILES, openRunFile, readJsonl, readRunFile } from "./files.js";

/** Files a run may hold beyond the original contract (docs/run-store.md). */
export const EXTRA_RUN_FILES = {
  annotations: "annotations.jsonl",
  custom: "custom.arrows",
  knobs: "knobs.arrows",
} as const;

const TAG_RE = /^[\p{L}\p{N}_.:/=+@-]{1,64}$/u;
const MAX_NOTE = 64 * 1024;

/** Throws unless `tag` is 1-64 letters, digits or `_ . : / = + @ -` (no spaces: tags are words). */
export function checkTag(tag: unknown): string {
  if (typeof tag !== "string" || !TAG_RE.test(tag))
    throw new TypeError(`invalid tag ${JSON.stringify(tag)}: use 1-64 letters, digits or _ . : / = + @ - (no spaces)`);
  return tag;
}

export interface RunNote {
  time: string;
  text: string;
  step?: number;
}

export interface Annotations {
  /** Current tags, in the order they were first added. */
  tags: string[];
  notes: RunNote[];
  /** Lines that were skipped as invalid. */
  warnings: string[];
}

export type AnnotationInput =
  { kind: "tag" | "untag"; tag: string; step?: number } | { kind: "note"; text: string; step?: number };

// One checksummed record per line, like events.jsonl (jsonlRecords.ts).
function line(a: AnnotationInput): string {
  const time = new Date().toISOString();
  if (a.kind === "note") {
    if (typeof a.text !== "string" || a.text.trim() === "") throw new TypeError("a note needs some text");
    if (Buffer.byteLength(a.text, "utf8") > MAX_NOTE) throw new TypeError(`a note may hold at most ${MAX_NOTE} bytes`);
    return formatRecord({ time, kind: "note", text: a.text, ...(a.step !== undefined ? { step: a.step } : {}) });
  }
  return formatRecord({ time, kind: a.kind, tag: checkTag(a.tag) });
}

/**
 * Appends annotations to a run (one write, so concurrent annotators never interleave lines).
 * The folder must be a run (hold run.json).
 */
export function annotateRun(dir: string, items: readonly AnnotationInput[]): void {
  if (items.length === 0) return;
  const abs = resolve(dir);
  if (readRunFile(join(abs, RUN_FILES.meta)) === null)
    throw new RunStoreError(`${abs} is not a run (no ${RUN_FILES.meta})`, { file: join(abs, RUN_FILES.meta) });
  const text = items.map(line).join("");
  const path = join(abs, EXTRA_RUN_FILES.annotations);
  let fd: number;
  try {
    fd = openRunFile(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT);
  } catch (e) {
    if (e instanceof RunStoreError) throw e;
    throw new RunStoreError(`cannot annotate run ${abs}: ${describeError(e)}`, { file: path, cause: e });
  }
  try {
    writeSync(fd, text);
  } catch (e) {
    throw new RunStoreError(`cannot write ${EXTRA_RUN_FILES.annotations} in ${abs}: ${describeError(e)}`, {
      file: path,
      cause: e,
    });
  } finally {
    closeSync(fd);
  }
}

/** Folds annotations.jsonl into the current tags and the notes (empty for runs without one). */
export function readAnnotations(dir: string): Annotations {
  const { records, warnings } = readJsonl(join(resolve(dir), EXTRA_RUN_FILES.annotations), EXTRA_RUN_FILES.annotations);
  const tags: string[] = [];
  const notes: RunNote[] = [];
  for (const r of records) {
    if ((r["kind"] === "tag" || r["kind"] === "untag") && typeof r["tag"] === "string") {
      const at = tags.indexOf(r["tag"]);
      if (r["kind"] === "tag" && at < 0) tags.push(r["tag"]);
      if (r["kind"] === "untag" && at >= 0) tags.splice(at, 1);
    } else if (r["kind"] === "note" && typeof r["text"] === "string") {
      notes.push({
        time: typeof r["time"] === "string" ? r["time"] : "",
        text: r["text"],
        ...(typeof r["step"] === "number" ? { step: r["step"] } : {}),
      });
    }
  }
  return { tags, notes, warnings };
}
