/**
 * Writer side of the run store: one directory per training run (layout in docs/run-store.md).
 * The trainer owns one RunStore per run; notebooks and the CLI read runs with runReader.ts.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ArrowAppender, type ArrowAppenderOptions } from './arrowStream.js';
import { RunStoreError, describeError } from './errors.js';
import { RUN_FILES, listCheckpoints, writeJsonAtomic, type CheckpointInfo } from './files.js';
import { appendLayerColumns, appendMetricsRow, layersSchema, metricsSchema, type LayerColumns, type MetricsInput } from './schemas.js';

export type RunStatus = 'running' | 'finished' | 'stopped' | 'failed';
const STATUSES: readonly RunStatus[] = ['running', 'finished', 'stopped', 'failed'];

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
}

/** Known event kinds; other strings are allowed too. */
export type EventKind = 'set' | 'start' | 'stop' | 'resume' | 'checkpoint' | 'eval' | 'error';

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
  versions: Omit<RunVersions, 'node'> & { node?: string };
  device: string;
  seed: number;
  /** Row buffering of the Arrow streams (defaults: 256 rows / 2000 ms). */
  arrow?: Pick<ArrowAppenderOptions, 'flushRows' | 'flushIntervalMs'>;
}

export interface OpenRunOptions {
  arrow?: Pick<ArrowAppenderOptions, 'flushRows' | 'flushIntervalMs'>;
}

/** Resolves the runs home: explicit option, else $PRIMAL_HOME, else ./runs. */
export function resolveHome(home?: string): string {
  return resolve(home ?? (process.env['PRIMAL_HOME'] || 'runs'));
}

function slug(text: string): string {
  const s = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 48)
    .replace(/-+$/g, '');
  return s || 'run';
}

/** `2026-11-26T14-03-12` in UTC: sorts lexically in time order and is a valid file name. */
function timestampPart(d: Date): string {
  return d.toISOString().slice(0, 19).replace(/:/g, '-');
}

function runSlug(name: string | undefined, config: Record<string, unknown>): string {
  if (name) return slug(name);
  const parts = [config['quant'], config['preset']].filter((p): p is string => typeof p === 'string' && p !== '');
  return slug(parts.join('-') || 'run');
}

function readMeta(dir: string): RunMeta {
  const path = join(dir, RUN_FILES.meta);
  let meta: unknown;
  try {
    meta = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new RunStoreError(`cannot read ${RUN_FILES.meta} in ${dir}: ${describeError(e)}`, { file: path, cause: e });
  }
  if (meta === null || typeof meta !== 'object' || typeof (meta as RunMeta).id !== 'string') {
    throw new RunStoreError(`${RUN_FILES.meta} in ${dir} is not a run description (no "id")`, { file: path });
  }
  return meta as RunMeta;
}

export { readMeta as readRunMeta };

/**
 * Makes a JSONL file safe to append to: a last line cut short by a crash is removed (or, if it is
 * complete JSON that only lacks its newline, terminated).
 */
function repairJsonlTail(path: string): void {
  if (!existsSync(path)) return;
  const fd = openSync(path, 'r+');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return;
    const text = readFileSync(fd, 'utf8');
    if (text.endsWith('\n')) return;
    const cut = text.lastIndexOf('\n') + 1;
    const tail = text.slice(cut);
    let complete = false;
    try {
      JSON.parse(tail);
      complete = true;
    } catch {
      complete = false;
    }
    if (complete) appendFileSync(path, '\n');
    else ftruncateSync(fd, Buffer.byteLength(text.slice(0, cut), 'utf8'));
  } finally {
    closeSync(fd);
  }
}

export class RunStore {
  readonly dir: string;
  private meta: RunMeta;
  private readonly metrics: ArrowAppender;
  private readonly layers: ArrowAppender;
  private lastStep: number;
  private closed = false;

  private constructor(dir: string, meta: RunMeta, arrow: OpenRunOptions['arrow']) {
    this.dir = dir;
    this.meta = meta;
    this.lastStep = meta.step;
    const opts = { ...arrow };
    this.metrics = ArrowAppender.open(join(dir, RUN_FILES.metrics), metricsSchema, opts);
    try {
      this.layers = ArrowAppender.open(join(dir, RUN_FILES.layers), layersSchema, opts);
    } catch (e) {
      this.metrics.close();
      throw e;
    }
  }

  /** Creates `<home>/<id>/` with run.json (status "running", step 0) and empty streams. */
  static create(options: CreateRunOptions): RunStore {
    const home = resolveHome(options.home);
    mkdirSync(home, { recursive: true });
    const now = new Date();
    const base = `${timestampPart(now)}-${runSlug(options.name, options.config)}`;
    let id = '';
    let dir = '';
    // The random suffix makes ids unique; mkdir without `recursive` fails on an existing
    // directory, which is what makes the claim race-free between processes.
    for (let attempt = 0; ; attempt++) {
      id = `${base}-${randomBytes(attempt < 16 ? 2 : 4).toString('hex')}`;
      dir = join(home, id);
      try {
        mkdirSync(dir);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 64) throw e;
      }
    }
    mkdirSync(join(dir, RUN_FILES.checkpoints));
    const meta: RunMeta = {
      id,
      ...(options.name !== undefined ? { name: options.name } : {}),
      createdAt: now.toISOString(),
      config: options.config,
      versions: { ...options.versions, node: options.versions.node ?? process.version } as RunVersions,
      device: options.device,
      seed: options.seed,
      status: 'running',
      step: 0,
    };
    writeJsonAtomic(join(dir, RUN_FILES.meta), meta);
    appendFileSync(join(dir, RUN_FILES.events), '');
    appendFileSync(join(dir, RUN_FILES.samples), '');
    return new RunStore(dir, meta, options.arrow);
  }

  /**
   * Reopens an existing run to append to it (resume). Partly written tails left by a crash are
   * cut off. Status is left as it is: the trainer sets it and logs a "resume" event.
   */
  static open(dir: string, options: OpenRunOptions = {}): RunStore {
    const abs = resolve(dir);
    const meta = readMeta(abs);
    repairJsonlTail(join(abs, RUN_FILES.events));
    repairJsonlTail(join(abs, RUN_FILES.samples));
    mkdirSync(join(abs, RUN_FILES.checkpoints), { recursive: true });
    return new RunStore(abs, meta, options.arrow);
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

  appendMetrics(row: MetricsInput): void {
    this.ensureOpen();
    appendMetricsRow(this.metrics, row);
    this.seeStep(row.step);
  }

  appendLayers(cols: LayerColumns): void {
    this.ensureOpen();
    appendLayerColumns(this.layers, cols);
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
      step: typeof step === 'number' ? step : this.lastStep,
      time: typeof time === 'string' ? time : new Date().toISOString(),
      kind,
      ...rest,
    };
    appendFileSync(join(this.dir, RUN_FILES.events), `${JSON.stringify(line)}\n`);
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
    appendFileSync(join(this.dir, RUN_FILES.samples), `${JSON.stringify(line)}\n`);
  }

  /** Updates status and step in run.json (atomic rewrite). */
  setStatus(status: RunStatus, step: number = this.lastStep): void {
    if (!STATUSES.includes(status)) throw new TypeError(`unknown run status "${String(status)}"`);
    this.meta = { ...this.meta, status, step };
    this.seeStep(step);
    writeJsonAtomic(join(this.dir, RUN_FILES.meta), this.meta);
  }

  /** Where the checkpoint of `step` goes: `checkpoints/step-N.safetensors`. */
  checkpointPath(step: number): string {
    if (!Number.isSafeInteger(step) || step < 0) throw new TypeError(`invalid checkpoint step ${step}`);
    const dir = join(this.dir, RUN_FILES.checkpoints);
    mkdirSync(dir, { recursive: true });
    return join(dir, `step-${step}.safetensors`);
  }

  /** Checkpoints on disk, ascending by step. */
  checkpoints(): CheckpointInfo[] {
    return listCheckpoints(this.dir);
  }

  latestCheckpoint(): CheckpointInfo | null {
    const all = listCheckpoints(this.dir);
    return all.length > 0 ? all[all.length - 1]! : null;
  }

  /** Deletes all but the newest `keep` checkpoints (by step); returns the deleted paths. */
  pruneCheckpoints(keep: number): string[] {
    if (!Number.isSafeInteger(keep) || keep < 0) throw new TypeError(`invalid keep count ${keep}`);
    const all = listCheckpoints(this.dir);
    const doomed = all.slice(0, Math.max(0, all.length - keep));
    for (const c of doomed) rmSync(c.path, { force: true });
    return doomed.map((c) => c.path);
  }

  /** Writes buffered metrics and layer rows now. */
  flush(): void {
    this.ensureOpen();
    this.metrics.flush();
    this.layers.flush();
  }

  /** Flushes and closes both streams (writing their EOS markers). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.metrics.close();
    } finally {
      this.layers.close();
    }
  }
}
