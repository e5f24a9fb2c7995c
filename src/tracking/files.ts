/** Small file helpers shared by the run store writer and reader. */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** File names inside a run directory (the data contract). */
export const RUN_FILES = {
  meta: 'run.json',
  metrics: 'metrics.arrows',
  layers: 'layers.arrows',
  events: 'events.jsonl',
  samples: 'samples.jsonl',
  checkpoints: 'checkpoints',
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
  for (const name of readdirSync(dir)) {
    const m = CHECKPOINT_RE.exec(name);
    if (m) out.push({ step: Number(m[1]), path: join(dir, name) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/**
 * Writes JSON so that readers see either the old or the new file, never a mix: write a temp file
 * next to the target, flush it to disk, then rename over the target (atomic on POSIX).
 */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const text = `${JSON.stringify(value, null, 2)}\n`;
  try {
    const fd = openSync(tmp, 'w', 0o644);
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
  if (!existsSync(path)) return { records: [], warnings: [] };
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const records: Record<string, unknown>[] = [];
  const warnings: string[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const isUnterminatedTail = i === lines.length - 1;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      if (!isUnterminatedTail) warnings.push(`${label} line ${i + 1} is not valid JSON; skipped`);
      return;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      warnings.push(`${label} line ${i + 1} is not a JSON object; skipped`);
      return;
    }
    records.push(value as Record<string, unknown>);
  });
  return { records, warnings };
}
