/**
 * The one way PRIMAL writes inside a run directory. A run folder may come from someone else (a
 * shared disk, an archive, a colleague), so every name in it may have been planted:
 *
 * - no symbolic link is followed and no hard link is written through: files are opened with
 *   O_NOFOLLOW and must have exactly one name (st_nlink 1), so appending to `events.jsonl` can never
 *   change a file elsewhere that shares its inode;
 * - folders are created one level at a time and every existing level is checked with lstat, so a
 *   planted `checkpoints/damaged-…` or `export` link is refused instead of followed;
 * - files a reader may see half-written are written whole: a new temporary file (O_CREAT|O_EXCL,
 *   so an entry planted under that name is never opened), fsync, rename over the target (which
 *   replaces a planted link or hard link instead of writing through it), fsync of the folder;
 * - every failure names the file (`cannot write run.json in …: ENOSPC: no space left on device`).
 *
 * The checks run against the names as they are when PRIMAL writes; they stop planted entries, not
 * a process that swaps folders while PRIMAL is writing (Node offers no openat()).
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { RunStoreError, describeError } from "./errors.js";

/** "cannot write run.json in /runs/x: ENOSPC: no space left on device, write" (the file is named). */
export function writeError(path: string, e: unknown, what = "write"): RunStoreError {
  if (e instanceof RunStoreError) return e;
  return new RunStoreError(`cannot ${what} ${basename(path)} in ${dirname(path)}: ${describeError(e)}`, {
    file: path,
    cause: e,
  });
}

/** Whether an error is a full disk or an exhausted quota. */
export function isNoSpace(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

function linkError(path: string): RunStoreError {
  return new RunStoreError(
    `${path} is a symbolic link; refusing to write through it (run directories may not contain links)`,
    { file: path },
  );
}

/** Throws unless the open file `fd` (named `path`) is a regular file (with no other name, if asked). */
function checkRegular(fd: number, path: string, singleName: boolean): void {
  const st = fstatSync(fd);
  if (!st.isFile()) {
    throw new RunStoreError(
      `${basename(path)} in ${dirname(path)} is not a regular file (a FIFO, device or directory)`,
      { file: path },
    );
  }
  if (singleName && st.nlink > 1) {
    throw new RunStoreError(
      `${basename(path)} in ${dirname(path)} has ${st.nlink} hard links: writing to it would change the same file ` +
        `under its other name(s) too, so it is refused. Copy the run with 'cp -r' (not 'cp -l') or replace the ` +
        `file by a copy of itself`,
      { file: path },
    );
  }
}

/**
 * Opens a run file never through a symbolic link and never blocking on a FIFO or device
 * (O_NOFOLLOW | O_NONBLOCK), and checks that it is a regular file; with `singleName`, also that no
 * other hard link to it exists. Other errors (ENOENT, EACCES…) are thrown as they are.
 */
export function openRegular(path: string, flags: number, mode = 0o644, singleName = false): number {
  let fd: number;
  try {
    fd = openSync(path, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ELOOP") {
      throw new RunStoreError(
        `${basename(path)} in ${dirname(path)} is a symbolic link; run files must be regular files`,
        { file: path, cause: e },
      );
    }
    throw e;
  }
  try {
    checkRegular(fd, path, singleName);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/**
 * Opens a file of a run for writing (flags from fs.constants, e.g. O_WRONLY|O_APPEND|O_CREAT):
 * never through a symbolic link, never a FIFO or device, never a file with another hard link.
 * Errors other than ENOENT name the file.
 */
export function openForWrite(path: string, flags: number, mode = 0o644): number {
  try {
    return openRegular(path, flags, mode, true);
  } catch (e) {
    if (e instanceof RunStoreError || (e as NodeJS.ErrnoException).code === "ENOENT") throw e;
    throw writeError(path, e, "open");
  }
}

/** Throws when `path` exists and is a symbolic link. */
export function refuseLink(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (st.isSymbolicLink()) throw linkError(path);
}

/**
 * Makes sure `dir` is a real folder inside (or equal to) `root`, creating missing levels one at a
 * time. Every level below `root` that exists must be a folder and not a link. `root` itself is the
 * caller's (a run directory the user named) and is taken as it is.
 */
export function ensureDir(root: string, dir: string): string {
  const base = resolve(root);
  const target = resolve(dir);
  const rel = relative(base, target);
  if (rel.startsWith("..") || isAbsolute(rel)) throw new Error(`${target} is not inside ${base}`);
  let cur = base;
  for (const part of rel === "" ? [] : rel.split(sep)) {
    cur = join(cur, part);
    try {
      mkdirSync(cur, 0o755);
      continue;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw writeError(cur, e, "create the folder");
    }
    const st = lstatSync(cur);
    if (st.isSymbolicLink()) throw linkError(cur);
    if (!st.isDirectory()) throw new RunStoreError(`${cur} is not a folder`, { file: cur });
  }
  return target;
}

/** Makes a rename or a new file in `dir` durable (best effort where folders cannot be fsynced). */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a folder; the rename itself is still atomic.
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, data: Uint8Array, at: number): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, at + done);
}

/** A fresh temporary name beside `path`; created with O_EXCL, so nothing planted there is opened. */
export function tempPath(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
}

export interface AtomicWriteOptions {
  /** Also check (and create) the folders from this run directory down to the file's folder. */
  root?: string;
  mode?: number;
  /**
   * When the disk is full and the temporary copy cannot be written, overwrite the existing file in
   * place with these bytes instead (e.g. a compact form of the same JSON), if they fit into it: a
   * status update must reach run.json even then, and rewriting blocks a file already has needs no
   * new ones. Not atomic, so only for that case.
   */
  inPlaceWhenFull?: string | Uint8Array;
}

/**
 * Writes `data` to `path` so that a reader sees the old or the new file, never a part: a new
 * temporary file beside it, fsync, rename over `path`, fsync of the folder. A link or hard link
 * planted at `path` is replaced, never written through. Throws RunStoreError naming the file.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  if (opts.root !== undefined) ensureDir(opts.root, dirname(path));
  const tmp = tempPath(path);
  let fd: number | undefined;
  try {
    fd = openSync(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      opts.mode ?? 0o644,
    );
    writeAll(fd, bytes, 0);
    fsyncSync(fd);
    const closing = fd;
    fd = undefined;
    closeSync(closing);
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // The original error is the one to report.
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      // Never created, or already renamed.
    }
    const fallback = opts.inPlaceWhenFull;
    if (fallback !== undefined && isNoSpace(e)) {
      if (overwriteInPlace(path, typeof fallback === "string" ? Buffer.from(fallback, "utf8") : fallback)) return;
    }
    throw writeError(path, e);
  }
  fsyncDir(dirname(path));
}

/**
 * The full-disk fallback of writeFileAtomic: rewrites an existing single-named regular file in place
 * when `bytes` is no longer than it (then cut to length). Returns false when it does not apply.
 */
function overwriteInPlace(path: string, bytes: Uint8Array): boolean {
  let fd: number;
  try {
    fd = openForWrite(path, constants.O_WRONLY);
  } catch {
    return false;
  }
  try {
    if (fstatSync(fd).size < bytes.length) return false;
    writeAll(fd, bytes, 0);
    ftruncateSync(fd, bytes.length);
    fsyncSync(fd);
    return true;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/**
 * Moves `file` into the folder `destDir` (created inside `root` without following links). If a
 * file of that name exists there already, the moved one gets a numbered name; nothing is
 * overwritten. Returns the new path.
 */
export function moveInto(root: string, file: string, destDir: string): string {
  ensureDir(root, destDir);
  const name = basename(file);
  let dest = join(destDir, name);
  for (let n = 1; exists(dest); n++) dest = join(destDir, `${name}.${n}`);
  try {
    renameSync(file, dest);
  } catch (e) {
    throw writeError(dest, e, "move into place");
  }
  return dest;
}

/** Whether anything (a file, folder or link, dangling or not) has this name. */
export function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A folder name `<prefix>-<UTC time>` (plus a counter when taken) that does not exist in `parent`. */
export function freshName(parent: string, prefix: string, suffix = ""): string {
  const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, "-");
  let name = `${prefix}-${stamp}${suffix}`;
  for (let n = 2; exists(join(parent, name)); n++) name = `${prefix}-${stamp}-${n}${suffix}`;
  return name;
}
