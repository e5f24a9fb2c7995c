// Scratch folders of data-parallel ranks other than 0 (docs/distributed.md): they train like rank 0
// but write their run records into a temporary folder nobody reads. The folder is removed when
// the trainer is disposed and when the process exits; a rank that is killed (SIGKILL, the OOM
// killer, a launcher tearing down the job) cannot clean up, so every start of a trainer sweeps the
// folders whose process is gone.
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { processAlive } from "./tracking/runLock.js";

const PREFIX = "primal-rank";
/** `primal-rank<r>-<host>-<pid>-XXXXXX` (this version) or `primal-rank<r>-XXXXXX` (earlier ones). */
const NAME_RE = /^primal-rank(\d+)-(?:(.+)-(\d+)-)?[A-Za-z0-9]{6}$/;

/** The host part of a scratch name: letters, digits, dots and underscores only (no "-"). */
function hostTag(): string {
  return hostname().replace(/[^A-Za-z0-9._]/g, "_") || "host";
}

const mine = new Set<string>();
let exitHook = false;

/** Removes the scratch folder `dir` (idempotent). */
export function removeRankScratch(dir: string): void {
  mine.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * The owner of a scratch folder written by an earlier version (no pid in its name): the pid in
 * the lock of the run inside it, when there is one.
 */
function ownerFromLock(dir: string): { pid: number; host: string } | null {
  try {
    for (const run of readdirSync(dir)) {
      const v = JSON.parse(readFileSync(join(dir, run, "lock"), "utf8")) as { pid?: unknown; host?: unknown };
      if (typeof v.pid === "number" && typeof v.host === "string") return { pid: v.pid, host: v.host };
    }
  } catch {
    // No run or no readable lock inside.
  }
  return null;
}

/**
 * Removes the scratch folders in `parent` (default: the OS temp folder) left by processes of this
 * host that no longer run. Returns the removed folders.
 */
export function sweepRankScratch(parent: string = tmpdir()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(parent).filter((n) => n.startsWith(PREFIX));
  } catch {
    return removed;
  }
  const host = hostTag();
  for (const name of names) {
    const m = NAME_RE.exec(name);
    if (!m) continue;
    const dir = join(parent, name);
    try {
      if (!lstatSync(dir).isDirectory()) continue; // never follow a link planted in /tmp
    } catch {
      continue;
    }
    let dead: boolean;
    if (m[3] !== undefined) {
      dead = m[2] === host && !processAlive(Number(m[3]));
    } else {
      const owner = ownerFromLock(dir);
      dead = owner !== null && owner.host === hostname() && !processAlive(owner.pid);
    }
    if (!dead || mine.has(dir)) continue;
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/** A new scratch folder for `rank`, removed again on process exit; sweeps dead ones first. */
export function makeRankScratch(rank: number, parent: string = tmpdir()): string {
  sweepRankScratch(parent);
  const dir = mkdtempSync(join(parent, `${PREFIX}${rank}-${hostTag()}-${process.pid}-`));
  mine.add(dir);
  if (!exitHook) {
    exitHook = true;
    process.once("exit", () => {
      for (const d of mine) rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}
