// The dashboard's read-only view of a run home: run folders resolved safely (no path outside the
// home, no symbolic links), and runs read again only when one of their files changed.
import { existsSync, lstatSync, readdirSync, realpathSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { RUN_FILES } from "../tracking/files.js";
import { EXTRA_RUN_FILES } from "../tracking/annotations.js";
import { LOCK_FILE } from "../tracking/runLock.js";
import { readRun, summarizeRun, type RunData, type RunSummary } from "../tracking/runReader.js";
import { describeError } from "../tracking/errors.js";
import { liveStatus } from "../tracking/runStatus.js";
import { SWEEPS_DIR } from "../sweep/records.js";

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;
const SWEEP_ID_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

const WATCHED = [
  RUN_FILES.meta,
  RUN_FILES.metrics,
  RUN_FILES.layers,
  RUN_FILES.events,
  RUN_FILES.samples,
  EXTRA_RUN_FILES.custom,
  EXTRA_RUN_FILES.knobs,
  EXTRA_RUN_FILES.annotations,
  LOCK_FILE,
];

/** A folder directly inside `root` named `name`, or null (bad name, symlink, outside, missing). */
function childDir(root: string, name: string, re: RegExp): string | null {
  if (!re.test(name) || name.includes("..")) return null;
  const dir = join(root, name);
  try {
    const st = lstatSync(dir);
    if (!st.isDirectory() || st.isSymbolicLink()) return null;
    if (dirname(realpathSync(dir)) !== realpathSync(root)) return null;
  } catch {
    return null;
  }
  return dir;
}

/** Sizes and times of a run's files: changes when the writer appends or rewrites anything. */
function signature(dir: string): string {
  return WATCHED.map((f) => {
    try {
      const st = lstatSync(join(dir, f));
      return `${st.size}:${st.mtimeMs}`;
    } catch {
      return "-";
    }
  }).join("|");
}

export type LoadedRun = { ok: true; run: RunData } | { ok: false; id: string; dir: string; error: string };

export class RunCache {
  readonly home: string;
  private summaries = new Map<string, { sig: string; summary: RunSummary }>();
  private runs = new Map<string, { sig: string; loaded: LoadedRun }>();

  constructor(home: string) {
    this.home = home;
  }

  /** The run folder of id `id`, or null when it is not a run directly inside the home. */
  runDir(id: string): string | null {
    const dir = childDir(this.home, id, ID_RE);
    return dir && existsSync(join(dir, RUN_FILES.meta)) ? dir : null;
  }

  /** `<home>/sweeps/<id>`, or null. */
  sweepDir(id: string): string | null {
    const root = join(this.home, SWEEPS_DIR);
    try {
      if (lstatSync(root).isSymbolicLink()) return null;
    } catch {
      return null;
    }
    return childDir(root, id, SWEEP_ID_RE);
  }

  sweepIds(): string[] {
    const root = join(this.home, SWEEPS_DIR);
    try {
      if (lstatSync(root).isSymbolicLink()) return [];
      return readdirSync(root)
        .filter((n) => this.sweepDir(n) !== null && existsSync(join(root, n, "spec.json")))
        .sort();
    } catch {
      return [];
    }
  }

  /** Summaries of every run, newest first (re-read only where files changed). */
  list(): RunSummary[] {
    let names: string[] = [];
    try {
      if (!statSync(this.home).isDirectory()) return [];
      names = readdirSync(this.home);
    } catch {
      return [];
    }
    const out: RunSummary[] = [];
    const seen = new Set<string>();
    for (const name of names) {
      const dir = this.runDir(name);
      if (!dir) continue;
      seen.add(name);
      const sig = signature(dir);
      let cached = this.summaries.get(name);
      // The lock's liveness can change without any file changing (a writer killed): re-check
      // the runs that read as running on every listing.
      if (!cached || cached.sig !== sig || cached.summary.status === "running") {
        cached = { sig, summary: summarizeRun(dir, name) };
        this.summaries.set(name, cached);
      }
      out.push(cached.summary);
    }
    for (const k of [...this.summaries.keys()]) if (!seen.has(k)) this.summaries.delete(k);
    return out.sort((a, b) =>
      a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1,
    );
  }

  /** The whole run (tables, events, samples), or why it cannot be read. */
  load(id: string): LoadedRun | null {
    const dir = this.runDir(id);
    if (!dir) return null;
    const sig = signature(dir);
    const cached = this.runs.get(id);
    if (cached && cached.sig === sig) {
      // Same files; only the writer's liveness may have changed (killed since).
      if (cached.loaded.ok) {
        const live = liveStatus(dir, cached.loaded.run.meta);
        cached.loaded.run.status = live.status;
        if (live.reason) cached.loaded.run.statusReason = live.reason;
      }
      return cached.loaded;
    }
    let loaded: LoadedRun;
    try {
      loaded = { ok: true, run: readRun(dir) };
    } catch (e) {
      loaded = { ok: false, id, dir, error: describeError(e) };
    }
    this.runs.set(id, { sig, loaded });
    return loaded;
  }
}
