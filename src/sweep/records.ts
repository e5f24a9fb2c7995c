// Where a sweep keeps its bookkeeping inside the run home:
//   <home>/sweeps/<sweepId>/spec.json            the spec last run (name filled in)
//   <home>/sweeps/<sweepId>/points/<key>/point.json  which run trains the point
//   <home>/sweeps/<sweepId>/points/<key>/lock         held while a process works on the point
//   <home>/sweeps/<sweepId>/results.arrow        the results table (Arrow IPC file)
// The runs themselves are ordinary runs in <home>/<runId>/ whose run.json names the sweep point.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeJsonAtomic } from "../tracking/files.js";

export const SWEEPS_DIR = "sweeps";
const ID_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

export function sweepDir(home: string, sweepId: string): string {
  if (!ID_RE.test(sweepId)) throw new Error(`invalid sweep id ${JSON.stringify(sweepId)}`);
  return join(home, SWEEPS_DIR, sweepId);
}

export function pointDir(home: string, sweepId: string, key: string): string {
  if (!/^[0-9a-f]{12}$/.test(key)) throw new Error(`invalid sweep point key ${JSON.stringify(key)}`);
  return join(sweepDir(home, sweepId), "points", key);
}

/** point.json: the run that trains the point, and runs it replaced (no checkpoint to resume). */
export interface PointRecord {
  index: number;
  key: string;
  values: Record<string, unknown>;
  /** Run id (a folder of the home); absent until the run exists. */
  runId?: string;
  replaced?: string[];
}

export function readPointRecord(dir: string): PointRecord | null {
  const path = join(dir, "point.json");
  if (!existsSync(path)) return null;
  try {
    const v = JSON.parse(readFileSync(path, "utf8")) as PointRecord;
    if (typeof v !== "object" || v === null || typeof v.key !== "string") return null;
    // A run id is a folder name: never a path.
    if (v.runId !== undefined && (typeof v.runId !== "string" || /[/\\]|^\.\.?$/.test(v.runId))) delete v.runId;
    return v;
  } catch {
    return null;
  }
}

export function writePointRecord(dir: string, rec: PointRecord): void {
  mkdirSync(dir, { recursive: true });
  writeJsonAtomic(join(dir, "point.json"), rec);
}
