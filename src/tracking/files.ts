/** Small file helpers shared by the run store writer and reader. */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { RunStoreError, describeError } from "./errors.js";

/** File names inside a run directory (the data contract). */
export const RUN_FILES = {
  meta: "run.json",
  metrics: "metrics.arrows",
  layers: "layers.arrows",
  events: "events.jsonl",
  samples: "samples.jsonl",
  checkpoints: "checkpoints",
} as const;

const CHECKPOINT_RE = /^step-(\d+)\.safetensors$/;

export interface CheckpointInfo {
  step: number;
  path: string;
}

/** `checkpoints/step-N.safetensors` files of a run, ascending by step (empty if none). */
export function listCheckpoints(runDir: string): CheckpointInfo[] {
  const dir = join(runDir, RUN_FILES.checkpoints);
  if (!existsSync(dir)) return [];
  const out: CheckpointInfo[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const m = CHECKPOINT_RE.exec(e.name);
    // Regular files only: a FIFO or device named like a checkpoint would block the loader, and a
    // link could point anywhere.
    if (m && e.isFile()) out.push({ step: Number(m[1]), path: join(dir, e.name) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/**
 * Writes JSON so that readers see either the old or the new file, never a mix: write a temp file
 * next to the target, flush it to disk, then rename over the target (atomic on POSIX).
 */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const text = `${JSON.stringify(value, null, 2)}\n`;
  try {
    const fd = openSync(tmp, "w", 0o644);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dirname(path));
}

/** Makes a rename or a new file in `dir` durable (best effort where directories cannot be fsynced). */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY);
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens a file of a run directory without following a symbolic link and without blocking on a
 * FIFO or device, and checks that it is a regular file. Run directories can come from elsewhere
 * (shared, copied, hostile), so nothing in them is trusted to be what its name says.
 */
export function openRunFile(path: string, flags: number, mode = 0o644): number {
  let fd: number;
  try {
    fd = openSync(path, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK, mode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ELOOP") {
      throw new RunStoreError(
        `${basename(path)} in ${dirname(path)} is a symbolic link; run files must be regular files`,
        { file: path, cause: e },
      );
    }
    throw e;
  }
  try {
    if (!fstatSync(fd).isFile()) {
      throw new RunStoreError(
        `${basename(path)} in ${dirname(path)} is not a regular file (a FIFO, device or directory)`,
        { file: path },
      );
    }
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/** Reads a run file (see openRunFile); null when it does not exist. */
export function readRunFile(path: string): Buffer | null {
  let fd: number;
  try {
    fd = openRunFile(path, constants.O_RDONLY);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    if (e instanceof RunStoreError) throw e;
    throw new RunStoreError(`cannot read ${basename(path)} in ${dirname(path)}: ${describeError(e)}`, {
      file: path,
      cause: e,
    });
  }
  try {
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Throws when `path` exists and is a symbolic link (a run's subfolder redirected elsewhere). */
export function refuseSymlink(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (st.isSymbolicLink()) {
    throw new RunStoreError(
      `${path} is a symbolic link; refusing to write through it (run directories may not contain links)`,
      { file: path },
    );
  }
}

export interface JsonlRead {
  records: Record<string, unknown>[];
  warnings: string[];
}

/**
 * Reads a JSONL file of objects. A last line without its newline that does not parse is a write
 * cut short and is dropped silently; other bad lines are skipped with a warning.
 */
export function readJsonl(path: string, label: string): JsonlRead {
  const bytes = readRunFile(path);
  if (bytes === null) return { records: [], warnings: [] };
  const text = bytes.toString("utf8");
  const lines = text.split("\n");
  const records: Record<string, unknown>[] = [];
  const warnings: string[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    const isUnterminatedTail = i === lines.length - 1;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      if (!isUnterminatedTail) warnings.push(`${label} line ${i + 1} is not valid JSON; skipped`);
      return;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      warnings.push(`${label} line ${i + 1} is not a JSON object; skipped`);
      return;
    }
    records.push(value as Record<string, unknown>);
  });
  return { records, warnings };
}
