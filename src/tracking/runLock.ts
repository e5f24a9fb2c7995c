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
  openSync,
  readFileSync,
  renameSync,
  rmSync,
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
}

function alive(pid: number): boolean {
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
      return { pid: v.pid, host: v.host, since: String(v.since ?? "?") };
  } catch {
    // Unreadable or half-written (the writer died between create and write): treated below.
  }
  return null;
}

const held = new Set<RunLock>();
let exitHook = false;

export class RunLock {
  readonly path: string;
  /** Set when a stale lock of a dead process was taken over. */
  readonly replaced: LockOwner | null;
  private released = false;

  private constructor(path: string, replaced: LockOwner | null) {
    this.path = path;
    this.replaced = replaced;
    held.add(this);
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
    const me: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
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
        if (owner && (owner.host !== me.host || alive(owner.pid))) {
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
    held.delete(this);
    const owner = readOwner(this.path);
    if (owner && owner.pid === process.pid && owner.host === hostname()) rmSync(this.path, { force: true });
  }
}
