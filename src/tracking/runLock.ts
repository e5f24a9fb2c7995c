/**
 * One writer per run: `<run>/lock` holds the writer's pid, host and start time. It is created with
 * O_EXCL, so of two processes that try at once exactly one wins; the other gets an error naming
 * the holder. A lock left behind by a killed process (same host, pid no longer alive) is stale:
 * it is moved aside with an atomic rename (only one of several takers can win that rename) and
 * taken over, and the caller is told. Readers never look at the lock.
 */
import {
  closeSync,
  constants,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { RunStoreError, describeError } from "./errors.js";

export const LOCK_FILE = "lock";

export interface LockOwner {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  since: string;
  /**
   * The holder touches the lock file's mtime this often (ms) while it lives: a heartbeat that
   * readers on any host can check (see runLiveness.ts). Absent in locks of older writers.
   */
  heartbeatMs?: number;
}

/** How often a lock holder refreshes the lock file's mtime. */
export const HEARTBEAT_MS = 10_000;

/** Whether a process of this machine is alive (signal 0 probes without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readOwner(path: string): LockOwner | null {
  try {
    const v = JSON.parse(readFileSync(path, "utf8")) as Partial<LockOwner>;
    if (typeof v.pid === "number" && typeof v.host === "string")
      return {
        pid: v.pid,
        host: v.host,
        since: String(v.since ?? "?"),
        ...(typeof v.heartbeatMs === "number" ? { heartbeatMs: v.heartbeatMs } : {}),
      };
  } catch {
    // Unreadable or half-written (the writer died between create and write): treated below.
  }
  return null;
}

/** Start time (unix ms) of a local process, from /proc; null where that cannot be read. */
function processStart(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22 (starttime, clock ticks since boot) comes after the parenthesised command name.
    const ticks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1]);
    // Linux reports starttime in USER_HZ, 100 on every architecture Node runs on.
    if (!Number.isFinite(ticks) || !Number.isFinite(btime)) return null;
    return btime * 1000 + (ticks / 100) * 1000;
  } catch {
    return null;
  }
}

/** A heartbeat older than this means the holder is gone (also checked for other hosts). */
export function heartbeatStaleAfterMs(owner: LockOwner): number {
  return Math.max(120_000, 12 * (owner.heartbeatMs ?? HEARTBEAT_MS));
}

/** Why a lock's holder is gone, or null while it lives (see LockState). */
function holderGone(path: string, owner: LockOwner, now = Date.now()): string | null {
  if (owner.host === hostname()) {
    if (!processAlive(owner.pid)) return `pid ${owner.pid} is no longer running`;
    // A pid reused after a reboot or by a later process: it started after the lock was taken.
    const started = processStart(owner.pid);
    const since = Date.parse(owner.since);
    if (started !== null && Number.isFinite(since) && started > since + 2000)
      return `pid ${owner.pid} now belongs to a process started after the lock was taken`;
    return null;
  }
  // Another host: only its heartbeat tells (older writers had none; they are taken as alive).
  if (owner.heartbeatMs === undefined) return null;
  let mtime: number;
  try {
    mtime = lstatSync(path).mtimeMs;
  } catch {
    return null;
  }
  const age = now - mtime;
  return age > heartbeatStaleAfterMs(owner) ? `no heartbeat from ${owner.host} for ${Math.round(age / 1000)} s` : null;
}

function holderLives(path: string, owner: LockOwner): boolean {
  return holderGone(path, owner) === null;
}

/** What a reader can tell from a run's lock file without taking it. */
export type LockState =
  | { state: "none" }
  /** A live writer holds the run. */
  | { state: "held"; owner: LockOwner }
  /** The writer that held the run died (kill -9, a crash, a reboot) or stopped its heartbeat. */
  | { state: "dead"; owner: LockOwner | null; reason: string };

/** Reads the lock of run directory `dir` (never modifies it). */
export function lockState(dir: string, now = Date.now()): LockState {
  const path = join(dir, LOCK_FILE);
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return { state: "none" };
  }
  const owner = st.isFile() ? readOwner(path) : null;
  if (!owner) {
    // A writer between creating the lock and writing it is a moment; older than that it is junk.
    return now - st.mtimeMs < 5000
      ? { state: "held", owner: { pid: -1, host: "?", since: "?" } }
      : { state: "dead", owner: null, reason: "the lock file is unreadable" };
  }
  const gone = holderGone(path, owner, now);
  return gone === null ? { state: "held", owner } : { state: "dead", owner, reason: gone };
}

const held = new Set<RunLock>();
let exitHook = false;

export class RunLock {
  readonly path: string;
  /** Set when a stale lock of a dead process was taken over. */
  readonly replaced: LockOwner | null;
  private released = false;
  private readonly heartbeat: NodeJS.Timeout;

  private constructor(path: string, replaced: LockOwner | null) {
    this.path = path;
    this.replaced = replaced;
    held.add(this);
    // The heartbeat only touches the mtime: it never rewrites (and so can never empty) the file.
    this.heartbeat = setInterval(() => {
      try {
        const now = new Date();
        utimesSync(this.path, now, now);
      } catch {
        // A lock removed by hand or a read-only remount: readers then judge by pid or age.
      }
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
    if (!exitHook) {
      exitHook = true;
      // A normal exit (including process.exit after SIGINT/SIGTERM handling) frees the run.
      process.once("exit", () => {
        for (const l of held) l.release();
      });
    }
  }

  /** Takes the lock of run directory `dir` or throws RunStoreError naming the current holder. */
  static acquire(dir: string): RunLock {
    const path = join(dir, LOCK_FILE);
    const me: LockOwner = {
      pid: process.pid,
      host: hostname(),
      since: new Date().toISOString(),
      heartbeatMs: HEARTBEAT_MS,
    };
    let replaced: LockOwner | null = null;
    for (let attempt = 0; attempt < 4; attempt++) {
      let fd: number;
      try {
        fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== "EEXIST")
          throw new RunStoreError(`cannot lock run ${dir}: ${describeError(e)}`, { file: path, cause: e });
        const owner = readOwner(path);
        if (owner && holderLives(path, owner)) {
          throw new RunStoreError(
            `run ${dir} is being written by pid ${owner.pid} on ${owner.host} since ${owner.since} (lock file ${path}); ` +
              `only one process may train a run at a time. If that process is gone, delete the lock file.`,
            { file: path },
          );
        }
        if (!owner) {
          // Unparsable lock: either a writer between create and write (give it a moment) or junk.
          if (attempt < 2) {
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
            continue;
          }
        }
        // Stale: move it aside atomically; a concurrent taker that loses the rename retries.
        const aside = `${path}.stale-${process.pid}`;
        try {
          renameSync(path, aside);
        } catch (r) {
          if ((r as NodeJS.ErrnoException).code !== "ENOENT") throw r;
          continue;
        }
        const moved = readOwner(aside);
        if (moved && owner && (moved.pid !== owner.pid || moved.since !== owner.since)) {
          // Another taker replaced the stale lock between our read and our rename: put its live
          // lock back (link fails if yet another one exists, which then holds the run).
          try {
            linkSync(aside, path);
          } catch {
            // Someone holds the run either way; the next attempt reports them.
          }
          rmSync(aside, { force: true });
          continue;
        }
        rmSync(aside, { force: true });
        replaced = owner ?? { pid: -1, host: "?", since: "?" };
        continue;
      }
      try {
        writeSync(fd, `${JSON.stringify(me)}\n`);
        fsyncSync(fd);
      } catch (e) {
        // A full disk creates the file but not its content: an empty lock must not stay behind.
        closeSync(fd);
        rmSync(path, { force: true });
        throw new RunStoreError(`cannot lock run ${dir}: cannot write ${path}: ${describeError(e)}`, {
          file: path,
          cause: e,
        });
      }
      closeSync(fd);
      return new RunLock(path, replaced);
    }
    throw new RunStoreError(`cannot lock run ${dir}: the lock file keeps changing (another writer starting?)`, {
      file: path,
    });
  }

  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    clearInterval(this.heartbeat);
    held.delete(this);
    const owner = readOwner(this.path);
    if (owner && owner.pid === process.pid && owner.host === hostname()) rmSync(this.path, { force: true });
  }
}
