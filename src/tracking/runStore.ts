/**
 * Writer side of the run store: one directory per training run (layout in docs/run-store.md).
 * The trainer owns one RunStore per run; notebooks and the CLI read runs with runReader.ts.
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
  readFileSync,
  readdirSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, join, resolve } from "node:path";
import { ArrowAppender, type ArrowAppenderOptions } from "./arrowStream.js";
import { RunStoreError, describeError } from "./errors.js";
import { RUN_FILES, listCheckpoints, openRunFile, readRunFile, writeJsonAtomic, type CheckpointInfo } from "./files.js";
import { ensureDir, freshName, fsyncDir, moveInto, refuseLink, writeError, writeFileAtomic } from "./guardedWrite.js";
import { formatRecord, scanJsonl } from "./jsonlRecords.js";
import { RunLock } from "./runLock.js";
import { EXTRA_RUN_FILES, annotateRun, checkTag, type AnnotationInput } from "./annotations.js";
import {
  appendLayerColumns,
  appendMetricsRow,
  customSchema,
  knobTraceSchema,
  layersSchema,
  metricsSchema,
  type LayerColumns,
  type MetricsInput,
} from "./schemas.js";

export type RunStatus = "running" | "finished" | "stopped" | "failed";
const STATUSES: readonly RunStatus[] = ["running", "finished", "stopped", "failed"];

export interface RunVersions {
  primal: string;
  node: string;
  native: string;
  [other: string]: string;
}

/** Contents of run.json. */
export interface RunMeta {
  id: string;
  name?: string;
  /** ISO time. */
  createdAt: string;
  /** The full validated trainer config (preset, model, quant, knobs, data, device, …). */
  config: Record<string, unknown>;
  versions: RunVersions;
  device: string;
  seed: number;
  status: RunStatus;
  /** Last step recorded by setStatus (the metrics stream may be ahead while running). */
  step: number;
  /** Why the run failed (with status "failed"). */
  error?: string;
  /** Set for a run that is a point of a sweep. */
  sweep?: SweepRef;
}

/** Which sweep point a run trains (run.json "sweep"). */
export interface SweepRef {
  /** The sweep's id (`<home>/sweeps/<id>/`). */
  id: string;
  /** The point's position in the expanded spec. */
  point: number;
  /** Hash of the point's config. */
  key: string;
  /** The fields the point sets over the sweep's base config (dotted keys). */
  values: Record<string, unknown>;
}

/** Known event kinds; other strings are allowed too. */
export type EventKind = "set" | "start" | "stop" | "resume" | "checkpoint" | "eval" | "error";

export interface SampleInput {
  step?: number;
  /** ISO time; defaults to now. */
  time?: string;
  prompt: string;
  text: string;
  temperature: number;
  topK: number;
  seed: number;
}

export interface CreateRunOptions {
  /** Parent of run directories: default env PRIMAL_HOME, else ./runs (relative to the cwd). */
  home?: string;
  /** Optional human name; also used in the id instead of "<quant>-<preset>". */
  name?: string;
  config: Record<string, unknown>;
  versions: Omit<RunVersions, "node"> & { node?: string };
  device: string;
  seed: number;
  /** Row buffering of the Arrow streams (defaults: 256 rows / 2000 ms). */
  arrow?: Pick<ArrowAppenderOptions, "flushRows" | "flushIntervalMs">;
  /** The sweep point this run trains. */
  sweep?: SweepRef;
  /** Tags the run starts with (annotations.jsonl). */
  tags?: readonly string[];
}

export interface OpenRunOptions {
  arrow?: Pick<ArrowAppenderOptions, "flushRows" | "flushIntervalMs">;
  /** The run's lock, when the caller took it already (Trainer.resume locks before it loads). */
  lock?: RunLock;
}

/** Resolves the runs home: explicit option, else $PRIMAL_HOME, else ./runs. */
export function resolveHome(home?: string): string {
  return resolve(home ?? (process.env["PRIMAL_HOME"] || "runs"));
}

/** Lower-case `[a-z0-9-]`, at most 48 characters (ids and file names); "run" when nothing is left. */
export function slug(text: string, fallback = "run"): string {
  const s = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 48)
    .replace(/-+$/g, "");
  return s || fallback;
}

/** `2026-11-26T14-03-12` in UTC: sorts lexically in time order and is a valid file name. */
function timestampPart(d: Date): string {
  return d.toISOString().slice(0, 19).replace(/:/g, "-");
}

function runSlug(name: string | undefined, config: Record<string, unknown>): string {
  if (name) return slug(name);
  const parts = [config["quant"], config["preset"]].filter((p): p is string => typeof p === "string" && p !== "");
  return slug(parts.join("-") || "run");
}

/** Checks the fields every reader relies on, so a hand-edited or damaged run.json is named as such. */
function metaProblem(m: Record<string, unknown>): string | null {
  if (typeof m["id"] !== "string") return 'no "id"';
  if (m["config"] === null || typeof m["config"] !== "object" || Array.isArray(m["config"]))
    return '"config" is not an object';
  if (typeof m["createdAt"] !== "string") return '"createdAt" is not a string';
  if (!STATUSES.includes(m["status"] as RunStatus)) return `"status" is not one of ${STATUSES.join(", ")}`;
  if (typeof m["step"] !== "number" || !Number.isSafeInteger(m["step"]) || (m["step"] as number) < 0)
    return '"step" is not a non-negative integer';
  return null;
}

function readMeta(dir: string): RunMeta {
  const path = join(dir, RUN_FILES.meta);
  let meta: unknown;
  try {
    const bytes = readRunFile(path);
    if (bytes === null) throw new Error("no such file");
    meta = JSON.parse(bytes.toString("utf8"));
  } catch (e) {
    throw new RunStoreError(`cannot read ${RUN_FILES.meta} in ${dir}: ${describeError(e)}`, { file: path, cause: e });
  }
  const problem =
    meta === null || typeof meta !== "object" || Array.isArray(meta)
      ? "not a JSON object"
      : metaProblem(meta as Record<string, unknown>);
  if (problem)
    throw new RunStoreError(`${RUN_FILES.meta} in ${dir} is not a valid run description: ${problem}`, { file: path });
  return meta as RunMeta;
}

export { readMeta as readRunMeta };

/** What `primal repair` does, for messages that refuse a damaged run. */
export function repairHint(dir: string): string {
  return `\`primal repair ${dir}\` sets the damaged part aside (kept) and rebuilds the run from its intact prefix and checkpoints`;
}

/**
 * Makes a JSONL file safe to append to. Its records are verified first (damage is refused, naming
 * the line). A last line without its newline is kept when it is a whole record (the newline is
 * added); anything else there (a write cut short, or a record whose newline was damaged) is copied
 * to `<file>.tail-<time>` beside it before it is cut off, so no byte is lost. Returns that file.
 */
function setAsideJsonlTail(dir: string, name: string): string | null {
  const path = join(dir, name);
  let fd: number;
  try {
    fd = openRunFile(path, constants.O_RDWR);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  try {
    if (fstatSync(fd).size === 0) return null;
    const bytes = readFileSync(fd);
    let scan;
    try {
      scan = scanJsonl(bytes, name);
    } catch (e) {
      throw new RunStoreError(`${describeError(e)} (in ${dir}); ${repairHint(dir)}`, { file: path, cause: e });
    }
    if (scan.tail === "") return null;
    try {
      if (scan.tailIsRecord) {
        writeSync(fd, "\n", bytes.length);
        return null;
      }
      const aside = join(dir, freshName(dir, `${name}.tail`));
      writeFileAtomic(aside, bytes.subarray(scan.completeBytes));
      ftruncateSync(fd, scan.completeBytes);
      return aside;
    } catch (e) {
      throw writeError(path, e);
    }
  } finally {
    closeSync(fd);
  }
}

/** Temporary files of PRIMAL's writers: `<name>.tmp-<pid>-<hex>` (guardedWrite.ts) anywhere in the run. */
const STALE_TEMP_RE = /\.tmp-\d+-[0-9a-f]{8}$/;
/** The native checkpoint writer's temporary file, in checkpoints/. */
const STALE_CHECKPOINT_TEMP_RE = /^step-\d+\.safetensors\.tmp$/;

/**
 * Removes temporary files that writers killed mid-write left in the run folder and checkpoints/
 * (never renamed into place, so never part of the run). Only called with the run's lock held: no
 * other writer can be using them. Returns the removed paths.
 */
function removeStaleTemps(dir: string): string[] {
  const removed: string[] = [];
  for (const folder of [dir, join(dir, RUN_FILES.checkpoints)]) {
    let names: string[];
    try {
      names = readdirSync(folder);
    } catch {
      continue;
    }
    for (const name of names) {
      if (!STALE_TEMP_RE.test(name) && !(folder !== dir && STALE_CHECKPOINT_TEMP_RE.test(name))) continue;
      const p = join(folder, name);
      try {
        const st = lstatSync(p);
        if (!st.isFile() && !st.isSymbolicLink()) continue;
        unlinkSync(p); // removes the name only, never what a link points to
        removed.push(p);
      } catch {
        // Gone already, or not ours to remove; it is ignored by every reader either way.
      }
    }
  }
  return removed;
}

/** Appends whole lines to a JSONL file; a failed write is cut back so no partial line remains. */
class LineAppender {
  private readonly fd: number;
  constructor(readonly path: string) {
    this.fd = openRunFile(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT);
  }
  append(record: Record<string, unknown>): void {
    const line = formatRecord(record);
    const before = fstatSync(this.fd).size;
    try {
      writeSync(this.fd, line);
    } catch (e) {
      try {
        ftruncateSync(this.fd, before);
      } catch {
        // The reader drops an unterminated last line anyway.
      }
      throw new RunStoreError(
        `cannot write to ${basename(this.path)} in ${resolve(this.path, "..")}: ${describeError(e)}`,
        {
          file: this.path,
          cause: e,
        },
      );
    }
  }
  sync(): void {
    fsyncSync(this.fd);
  }
  close(): void {
    closeSync(this.fd);
  }
}

export class RunStore {
  readonly dir: string;
  private meta: RunMeta;
  private readonly metrics: ArrowAppender;
  private readonly layers: ArrowAppender;
  private readonly events: LineAppender;
  private readonly samples: LineAppender;
  /** custom.arrows and knobs.arrows, opened on first use (runs that never log have neither). */
  private custom: ArrowAppender | undefined;
  private knobTrace: ArrowAppender | undefined;
  private readonly arrowOptions: OpenRunOptions["arrow"];
  private readonly lock: RunLock;
  /** Checkpoints pruning must keep (the one the run was resumed from). */
  private readonly protectedCheckpoints = new Set<string>();
  private lastStep: number;
  private closed = false;
  /** Unterminated JSONL tails copied aside when the run was opened (see setAsideJsonlTail). */
  readonly setAsideTails: string[] = [];
  /** Temporary files of killed writers removed when the run was opened. */
  readonly removedTemps: string[] = [];

  private constructor(dir: string, meta: RunMeta, arrow: OpenRunOptions["arrow"], lock: RunLock) {
    this.dir = dir;
    this.meta = meta;
    this.lastStep = meta.step;
    this.lock = lock;
    this.arrowOptions = arrow;
    const opts = { ...arrow };
    const opened: { close(): void }[] = [];
    try {
      this.metrics = ArrowAppender.open(join(dir, RUN_FILES.metrics), metricsSchema, opts);
      opened.push(this.metrics);
      this.layers = ArrowAppender.open(join(dir, RUN_FILES.layers), layersSchema, opts);
      opened.push(this.layers);
      this.events = new LineAppender(join(dir, RUN_FILES.events));
      opened.push(this.events);
      this.samples = new LineAppender(join(dir, RUN_FILES.samples));
    } catch (e) {
      for (const o of opened) o.close();
      lock.release();
      throw e;
    }
  }

  /** Creates `<home>/<id>/` with run.json (status "running", step 0) and empty streams. */
  static create(options: CreateRunOptions): RunStore {
    const home = resolveHome(options.home);
    try {
      mkdirSync(home, { recursive: true });
    } catch (e) {
      throw new RunStoreError(`cannot create the runs folder ${home}: ${describeError(e)}`, { file: home, cause: e });
    }
    const now = new Date();
    const base = `${timestampPart(now)}-${runSlug(options.name, options.config)}`;
    let id = "";
    let dir = "";
    // The random suffix makes ids unique; mkdir without `recursive` fails on an existing
    // directory, which is what makes the claim race-free between processes.
    for (const t of options.tags ?? []) checkTag(t);
    for (let attempt = 0; ; attempt++) {
      id = `${base}-${randomBytes(attempt < 16 ? 2 : 4).toString("hex")}`;
      dir = join(home, id);
      try {
        mkdirSync(dir);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt >= 64)
          throw writeError(dir, e, "create the run folder");
      }
    }
    const lock = RunLock.acquire(dir);
    try {
      ensureDir(dir, join(dir, RUN_FILES.checkpoints));
    } catch (e) {
      lock.release();
      throw e;
    }
    const meta: RunMeta = {
      id,
      ...(options.name !== undefined ? { name: options.name } : {}),
      createdAt: now.toISOString(),
      config: options.config,
      versions: { ...options.versions, node: options.versions.node ?? process.version } as RunVersions,
      device: options.device,
      seed: options.seed,
      status: "running",
      step: 0,
      ...(options.sweep ? { sweep: options.sweep } : {}),
    };
    try {
      writeJsonAtomic(join(dir, RUN_FILES.meta), meta);
      if (options.tags?.length)
        annotateRun(
          dir,
          options.tags.map((tag) => ({ kind: "tag" as const, tag })),
        );
    } catch (e) {
      lock.release();
      throw e;
    }
    try {
      return new RunStore(dir, meta, options.arrow, lock);
    } catch (e) {
      // run.json exists: it must not say "running" for a run that never started.
      try {
        writeJsonAtomic(
          join(dir, RUN_FILES.meta),
          { ...meta, status: "failed", error: describeError(e) },
          { whenFull: true },
        );
      } catch {
        // The original error says what went wrong.
      }
      throw e;
    }
  }

  /**
   * Reopens an existing run to append to it (resume). Partly written tails left by a crash are
   * cut off. Status is left as it is: the trainer sets it and logs a "resume" event.
   */
  static open(dir: string, options: OpenRunOptions = {}): RunStore {
    const abs = resolve(dir);
    // Lock first: repairing tails of a run someone else is writing would damage it.
    const lock = options.lock ?? RunLock.acquire(abs);
    try {
      const meta = readMeta(abs);
      const tails = [RUN_FILES.events, RUN_FILES.samples]
        .map((f) => setAsideJsonlTail(abs, f))
        .filter((p): p is string => p !== null);
      ensureDir(abs, join(abs, RUN_FILES.checkpoints));
      const removed = removeStaleTemps(abs);
      const store = new RunStore(abs, meta, options.arrow, lock);
      store.setAsideTails.push(...tails);
      store.removedTemps.push(...removed);
      return store;
    } catch (e) {
      lock.release();
      if (e instanceof RunStoreError && / is (damaged|corrupt)/.test(e.message) && !e.message.includes("primal repair"))
        throw new RunStoreError(`${e.message}; ${repairHint(abs)}`, {
          ...(e.file !== undefined ? { file: e.file } : {}),
          ...(e.offset !== undefined ? { offset: e.offset } : {}),
          cause: e,
        });
      throw e;
    }
  }

  /** Set when this store took over the stale lock of a writer that died. */
  get replacedLock(): RunLock["replaced"] {
    return this.lock.replaced;
  }

  get id(): string {
    return this.meta.id;
  }

  /** A copy of the current run.json contents. */
  get info(): RunMeta {
    return structuredClone(this.meta);
  }

  /** Latest step seen through appendMetrics, appendLayers or setStatus. */
  get step(): number {
    return this.lastStep;
  }

  private ensureOpen(): void {
    if (this.closed) throw new Error(`RunStore ${this.meta.id} is closed`);
  }

  private seeStep(step: number): void {
    if (Number.isFinite(step) && step > this.lastStep) this.lastStep = step;
  }

  /**
   * Runs a write; when it fails (a full disk, an I/O error) run.json is set to "failed" with the
   * reason before the error is passed on, so no run says "running" after losing a write.
   */
  private guard<T>(write: () => T): T {
    try {
      return write();
    } catch (e) {
      if (e instanceof RunStoreError || typeof (e as NodeJS.ErrnoException)?.code === "string") this.markFailed(e);
      throw e;
    }
  }

  /** Sets status "failed" with the reason (best effort: on a full disk run.json is rewritten in place). */
  markFailed(reason: unknown): void {
    try {
      this.setStatus("failed", this.lastStep, describeError(reason));
    } catch {
      // Nothing more can be written; the caller reports the original error.
    }
  }

  appendMetrics(row: MetricsInput): void {
    this.ensureOpen();
    this.guard(() => appendMetricsRow(this.metrics, row));
    this.seeStep(row.step);
  }

  appendLayers(cols: LayerColumns): void {
    this.ensureOpen();
    this.guard(() => appendLayerColumns(this.layers, cols));
    this.seeStep(cols.step);
  }

  /**
   * Appends one line to events.jsonl: {step, time, kind, ...fields}. `step` defaults to the
   * latest step seen; e.g. event('set', { knob: 'bridge', old: 0.5, new: 0.7 }).
   */
  event(kind: EventKind | (string & {}), fields: Record<string, unknown> = {}): void {
    this.ensureOpen();
    const { step, time, ...rest } = fields;
    const line = {
      step: typeof step === "number" ? step : this.lastStep,
      time: typeof time === "string" ? time : new Date().toISOString(),
      kind,
      ...rest,
    };
    this.guard(() => this.events.append(line));
  }

  /** Appends one generated sample to samples.jsonl. */
  sample(rec: SampleInput): void {
    this.ensureOpen();
    const line = {
      step: rec.step ?? this.lastStep,
      time: rec.time ?? new Date().toISOString(),
      prompt: rec.prompt,
      text: rec.text,
      temperature: rec.temperature,
      topK: rec.topK,
      seed: rec.seed,
    };
    this.guard(() => this.samples.append(line));
  }

  private extraStream(which: "custom" | "knobTrace"): ArrowAppender {
    const open = this[which];
    if (open) return open;
    const made =
      which === "custom"
        ? ArrowAppender.open(join(this.dir, EXTRA_RUN_FILES.custom), customSchema, { ...this.arrowOptions })
        : ArrowAppender.open(join(this.dir, EXTRA_RUN_FILES.knobs), knobTraceSchema, { ...this.arrowOptions });
    this[which] = made;
    return made;
  }

  /**
   * Appends custom metrics of one step to custom.arrows (one row per name). Names are non-empty
   * strings; values numbers (NaN and ±Infinity are kept as they are).
   */
  logCustom(step: number, values: Readonly<Record<string, number>>, time = Date.now()): void {
    this.ensureOpen();
    if (!Number.isSafeInteger(step) || step < 0)
      throw new TypeError(`log: step must be a non-negative integer, got ${step}`);
    const names = Object.keys(values);
    for (const n of names) {
      if (n === "" || n.length > 128)
        throw new TypeError(`log: metric names are 1-128 characters, got ${JSON.stringify(n)}`);
      if (typeof values[n] !== "number") throw new TypeError(`log: "${n}" must be a number, got ${typeof values[n]}`);
    }
    if (names.length === 0) return;
    this.guard(() =>
      this.extraStream("custom").appendColumns(
        { step, time, name: names, value: Float64Array.from(names, (n) => values[n]!) },
        names.length,
      ),
    );
    this.seeStep(step);
  }

  /** Records the knobs in effect at `step` (knobs.arrows; null for a knob that is off). */
  recordKnobs(step: number, knobs: Readonly<Record<string, number | null>>): void {
    this.ensureOpen();
    const names = Object.keys(knobs);
    if (names.length === 0) return;
    // Nulls are checked per value against the nullable column (ColumnInput has no number|null type).
    const value = names.map((n) => knobs[n] ?? null) as unknown as ArrayLike<number>;
    this.guard(() => this.extraStream("knobTrace").appendColumns({ step, knob: names, value }, names.length));
  }

  /** Adds tags or notes to the run (annotations.jsonl). */
  annotate(items: readonly AnnotationInput[]): void {
    this.ensureOpen();
    annotateRun(this.dir, items);
  }

  /** Updates status and step in run.json (atomic rewrite); `error` says why a run failed. */
  setStatus(status: RunStatus, step: number = this.lastStep, error?: string): void {
    if (!STATUSES.includes(status)) throw new TypeError(`unknown run status "${String(status)}"`);
    const { error: _old, ...rest } = this.meta;
    this.meta = { ...rest, status, step, ...(status === "failed" && error !== undefined ? { error } : {}) };
    this.seeStep(step);
    writeJsonAtomic(join(this.dir, RUN_FILES.meta), this.meta, { whenFull: true });
  }

  /** Where the checkpoint of `step` goes: `checkpoints/step-N.safetensors`. */
  checkpointPath(step: number): string {
    if (!Number.isSafeInteger(step) || step < 0) throw new TypeError(`invalid checkpoint step ${step}`);
    const dir = ensureDir(this.dir, join(this.dir, RUN_FILES.checkpoints));
    const path = join(dir, `step-${step}.safetensors`);
    refuseLink(path);
    return path;
  }

  /** Checkpoints on disk, ascending by step. */
  checkpoints(): CheckpointInfo[] {
    return listCheckpoints(this.dir);
  }

  latestCheckpoint(): CheckpointInfo | null {
    const all = listCheckpoints(this.dir);
    return all.length > 0 ? all[all.length - 1]! : null;
  }

  /** Pruning never deletes this checkpoint (the one a run was resumed from). */
  protectCheckpoint(path: string): void {
    this.protectedCheckpoints.add(resolve(path));
  }

  /**
   * Deletes checkpoints so that at most `keep` remain, oldest first and never a protected one (the
   * checkpoint the run was resumed from counts toward `keep`, and unless `keep` is 0 the newest is
   * always kept).
   * Called before a checkpoint is written as well as after, so keeping K checkpoints never needs
   * room for more than K of them plus the temporary file of the one being written. Returns the
   * deleted paths.
   */
  pruneCheckpoints(keep: number): string[] {
    if (!Number.isSafeInteger(keep) || keep < 0) throw new TypeError(`invalid keep count ${keep}`);
    const all = listCheckpoints(this.dir);
    const isProtected = (c: CheckpointInfo) => this.protectedCheckpoints.has(resolve(c.path));
    const others = all.filter((c) => !isProtected(c));
    const room = keep === 0 ? 0 : Math.max(1, keep - (all.length - others.length));
    const doomed = others.slice(0, Math.max(0, others.length - room));
    for (const c of doomed) rmSync(c.path, { force: true });
    return doomed.map((c) => c.path);
  }

  /**
   * Moves checkpoints after `step` into `checkpoints/<kind>-<time>…/` (kept, not deleted), so a
   * run resumed from an older checkpoint starts a branch that later resumes cannot jump past. The
   * folder is new (a name already taken gets a counter) and created without following links.
   * Returns the folder, or null when there was nothing to move.
   */
  setAsideCheckpointsAfter(step: number, kind: "damaged" | "abandoned"): string | null {
    const later = listCheckpoints(this.dir).filter((c) => c.step > step);
    if (later.length === 0) return null;
    const parent = join(this.dir, RUN_FILES.checkpoints);
    const aside = join(parent, freshName(parent, kind, kind === "abandoned" ? `-after-step-${step}` : ""));
    for (const c of later) moveInto(this.dir, c.path, aside);
    fsyncDir(parent);
    return aside;
  }

  /**
   * Writes buffered metrics and layer rows now. Both streams are attempted; the first error is
   * thrown (its rows stay buffered, see ArrowAppender.flush).
   */
  flush(): void {
    this.ensureOpen();
    this.guard(() => this.flushStreams());
  }

  private flushStreams(): void {
    let first: unknown;
    for (const a of [this.metrics, this.layers, this.custom, this.knobTrace]) {
      if (!a) continue;
      try {
        a.flush();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  }

  /** Flushes and forces every stream of the run to stable storage (before a checkpoint exists). */
  sync(): void {
    this.ensureOpen();
    this.guard(() => {
      this.metrics.sync();
      this.layers.sync();
      this.custom?.sync();
      this.knobTrace?.sync();
      this.events.sync();
      this.samples.sync();
    });
  }

  /** Flushes and closes all files (writing the streams' EOS markers) and frees the lock. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      try {
        this.metrics.close();
      } finally {
        try {
          this.layers.close();
        } finally {
          try {
            this.custom?.close();
          } finally {
            this.knobTrace?.close();
          }
        }
      }
    } finally {
      this.events.close();
      this.samples.close();
      this.lock.release();
    }
  }
}
