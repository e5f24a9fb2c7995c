/** Small file helpers shared by the run store writer and reader. */
import { closeSync, constants, existsSync, readFileSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { RunStoreError, describeError } from "./errors.js";
import { scanJsonl } from "./jsonlRecords.js";
import {
  fsyncDir,
  openForWrite,
  openRegular,
  refuseLink,
  writeFileAtomic,
  type AtomicWriteOptions,
} from "./guardedWrite.js";

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
 * Writes JSON so that readers see either the old or the new file, never a mix (see
 * writeFileAtomic). With `whenFull`, a full disk still gets the update into the existing file (in
 * its compact form, rewritten in place).
 */
export function writeJsonAtomic(path: string, value: unknown, opts: { root?: string; whenFull?: boolean } = {}): void {
  const options: AtomicWriteOptions = {
    ...(opts.root !== undefined ? { root: opts.root } : {}),
    ...(opts.whenFull ? { inPlaceWhenFull: `${JSON.stringify(value)}\n` } : {}),
  };
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`, options);
}

export { fsyncDir };

/**
 * Opens a file of a run directory without following a symbolic link and without blocking on a
 * FIFO or device, and checks that it is a regular file. Run directories can come from elsewhere
 * (shared, copied, hostile), so nothing in them is trusted to be what its name says. Opened for
 * writing, the file must also have no other hard link (see guardedWrite.ts).
 */
export function openRunFile(path: string, flags: number, mode = 0o644): number {
  const writing = (flags & (constants.O_WRONLY | constants.O_RDWR)) !== 0;
  return writing ? openForWrite(path, flags, mode) : openRegular(path, flags, mode);
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
export const refuseSymlink = refuseLink;

export interface JsonlRead {
  records: Record<string, unknown>[];
  warnings: string[];
}

/**
 * Reads a JSONL file of records (see jsonlRecords.ts). An unterminated last line is a write cut
 * short and is ignored, unless it is a whole checksummed record; a record that fails its checksum
 * throws RunStoreError naming the file and line; bad lines of files written before records were
 * checksummed are skipped with a warning.
 */
export function readJsonl(path: string, label: string): JsonlRead {
  const bytes = readRunFile(path);
  if (bytes === null) return { records: [], warnings: [] };
  const scan = scanJsonl(bytes, label);
  return { records: scan.records, warnings: scan.warnings };
}
