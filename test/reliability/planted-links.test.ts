// Nothing PRIMAL does to a run writes outside it, whatever was planted inside: for every file and
// folder that a real sequence of commands writes into a run (resume + train + evaluate, a fork,
// export, report, repair), a copy of the run gets a symbolic link there (to a file or folder
// outside the run) and, for files, a hard link (to a file outside the run), and the sequence runs
// again. The outside files must not change by a byte, and whatever is refused is refused with a
// clear message. The list of names is not written down here: a probe run records every name the
// sequence creates, opens for writing, renames or removes (node:fs calls, plus the run tree
// before and after each command), so files that writers add later are covered too.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs, {
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  watch,
  writeFileSync,
} from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { exportRunGGUF } from "../../src/export/llamaExport.js";
import { writeReport } from "../../src/cli/reportCommand.js";
import { tinyConfig } from "./fixtures/common.js";

const work = mkdtempSync(join(tmpdir(), "primal-planted-"));
// Set-aside folders are named by the time: a frozen clock gives the probe and every planted copy
// the same names, so a link can be planted where the command will write.
const FROZEN = new Date("2031-05-06T07:08:09.000Z");

type Op = { name: string; run: (dir: string) => Promise<void> };

/** repairRun where this version has it (the sequence runs without it otherwise). */
const repairRun = await import("../../src/tracking/repair.js").then(
  (m: { repairRun?: (dir: string) => unknown }) => m.repairRun ?? null,
  () => null,
);

const OPS: Op[] = [
  {
    name: "resume, train 2 steps, evaluate",
    run: async (dir) => {
      const t = await Trainer.resume(dir);
      try {
        await t.train(2);
        await t.evaluate();
      } finally {
        t.dispose();
      }
    },
  },
  {
    name: "resume from step 6 with fork",
    run: async (dir) => {
      const t = await Trainer.resume(join(dir, "checkpoints", "step-6.safetensors"), { fork: true });
      try {
        await t.train(1);
      } finally {
        t.dispose();
      }
    },
  },
  { name: "export", run: async (dir) => void exportRunGGUF(dir) },
  { name: "report", run: async (dir) => void (await writeReport(dir, undefined, ["html"])) },
  {
    name: "repair a damaged metrics stream",
    run: async (dir) => {
      if (!repairRun) return;
      // The damage is the test's own write: a file made outside the run, renamed over the stream.
      const b = readFileSync(join(dir, "metrics.arrows"));
      b[b.length >> 1]! ^= 0x10;
      const damaged = join(dirname(dir), "metrics.arrows.damaged");
      writeFileSync(damaged, b);
      renameSync(damaged, join(dir, "metrics.arrows"));
      repairRun(dir);
    },
  },
];

interface Entry {
  kind: "file" | "dir" | "link";
  sum: string;
}

/** Every entry under `root` (not following links): kind, and content hash or link target. */
function tree(root: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const rel = relative(root, p);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out.set(rel, { kind: "link", sum: readlinkSync(p) });
      else if (st.isDirectory()) {
        out.set(rel, { kind: "dir", sum: "" });
        walk(p);
      } else out.set(rel, { kind: "file", sum: createHash("sha1").update(readFileSync(p)).digest("hex") });
    }
  };
  if (existsSync(root)) walk(root);
  return out;
}

/** Calls `fn` while recording the paths node:fs is asked to create, open, rename or remove. */
async function traceFs(fn: () => Promise<void>): Promise<{ paths: string[]; dirs: string[] }> {
  const paths: string[] = [];
  const dirs: string[] = [];
  const f = fs as unknown as Record<string, (...a: unknown[]) => unknown>;
  const p = fs.promises as unknown as Record<string, (...a: unknown[]) => unknown>;
  const saved: [Record<string, (...a: unknown[]) => unknown>, string, (...a: unknown[]) => unknown][] = [];
  const wrap = (obj: Record<string, (...a: unknown[]) => unknown>, name: string, args: number[], dir = false) => {
    const orig = obj[name]!;
    saved.push([obj, name, orig]);
    obj[name] = function (this: unknown, ...a: unknown[]) {
      for (const i of args) if (typeof a[i] === "string") (dir ? dirs : paths).push(a[i] as string);
      return orig.apply(this, a);
    };
  };
  for (const n of ["openSync", "writeFileSync", "appendFileSync", "unlinkSync", "rmSync", "truncateSync"])
    wrap(f, n, [0]);
  for (const n of ["renameSync", "linkSync", "copyFileSync", "symlinkSync"]) wrap(f, n, [0, 1]);
  wrap(f, "mkdirSync", [0], true);
  wrap(f, "mkdtempSync", [0], true);
  for (const n of ["writeFile", "appendFile", "open", "unlink", "rm"]) wrap(p, n, [0]);
  wrap(p, "rename", [0, 1]);
  wrap(p, "mkdir", [0], true);
  syncBuiltinESMExports();
  try {
    await fn();
  } finally {
    for (const [obj, name, orig] of saved) obj[name] = orig;
    syncBuiltinESMExports();
  }
  return { paths, dirs };
}

async function runOps(dir: string, from: number): Promise<{ op: string; error: string }[]> {
  const errors: { op: string; error: string }[] = [];
  for (const op of OPS.slice(from)) {
    try {
      await op.run(dir);
    } catch (e) {
      errors.push({ op: op.name, error: e instanceof Error ? e.message : String(e) });
    }
  }
  return errors;
}

/** A name chosen at random when written (created with O_EXCL): nothing can be planted there. */
const RANDOM_NAME = /\.tmp-\d+-[0-9a-f]{8}$/;

interface Target {
  rel: string;
  dir: boolean;
  /** Index of the first command that writes it; a planted copy starts from the state before it. */
  firstOp: number;
}

let targets: Target[] = [];
const states: string[] = [];

beforeAll(async () => {
  vi.useFakeTimers({ toFake: ["Date"], now: FROZEN });
  const home = join(work, "home");
  const t = await Trainer.create(
    tinyConfig(home, {
      name: "plant",
      checkpointEvery: 3,
      sampleEvery: 3,
      eval: { every: 3, maxTokens: 200 },
    }) as never,
  );
  await t.train(9);
  t.dispose();
  // The newest checkpoint is damaged (resume sets it aside into checkpoints/damaged-…) and the
  // events file ends in a cut-off line (resume sets it aside beside the file).
  const ck = join(t.runDir, "checkpoints", "step-9.safetensors");
  const b = readFileSync(ck);
  b[b.length - 100]! ^= 0x01;
  writeFileSync(ck, b);
  writeFileSync(join(t.runDir, "events.jsonl"), readFileSync(join(t.runDir, "events.jsonl")).toString() + '{"step":9,');

  // The probe: the same commands on a copy, recording what each one writes.
  const probe = join(work, "probe", "run");
  mkdirSync(dirname(probe), { recursive: true });
  execFileSync("cp", ["-r", t.runDir, probe]);
  const found = new Map<string, Target>();
  const note = (rel: string, dir: boolean, op: number) => {
    if (rel === "" || rel.startsWith("..") || isAbsolute(rel) || RANDOM_NAME.test(rel)) return;
    const seen = found.get(rel);
    if (!seen) found.set(rel, { rel, dir, firstOp: op });
    else if (dir) seen.dir = true;
  };
  for (let i = 0; i < OPS.length; i++) {
    const state = join(work, "states", String(i), "run");
    mkdirSync(dirname(state), { recursive: true });
    execFileSync("cp", ["-r", probe, state]);
    states.push(state);
    const before = tree(probe);
    // Native code writes without node:fs (the checkpoint's temporary file): every folder that
    // exists is watched too, which reports each name created or renamed in it.
    const watched: string[] = [];
    const folders = ["", ...[...before].filter(([, e]) => e.kind === "dir").map(([rel]) => rel)];
    const watchers = folders.map((rel) =>
      watch(join(probe, rel), (_event, name) => {
        if (name) watched.push(join(rel, name.toString()));
      }),
    );
    const alone = await traceFs(() => OPS[i]!.run(probe));
    await new Promise((r) => setTimeout(r, 100));
    for (const w of watchers) w.close();
    for (const rel of watched) note(rel, false, i);
    const after = tree(probe);
    for (const p of alone.paths) note(relative(probe, p), false, i);
    for (const p of alone.dirs) note(relative(probe, p), true, i);
    for (const [rel, e] of after) {
      const old = before.get(rel);
      if (!old || old.kind !== e.kind || old.sum !== e.sum) note(rel, e.kind === "dir", i);
    }
    for (const [rel, e] of before) if (!after.has(rel)) note(rel, e.kind === "dir", i);
  }
  targets = [...found.values()].sort((a, b) => (a.rel < b.rel ? -1 : 1));
}, 600_000);

afterAll(() => {
  vi.useRealTimers();
  rmSync(work, { recursive: true, force: true });
});

describe("links planted in a run", () => {
  it("the probe found what a run writes", () => {
    const names = targets.map((t) => t.rel);
    console.log(`names written by the commands:\n  ${names.join("\n  ")}`);
    for (const expected of [
      "run.json",
      "lock",
      "metrics.arrows",
      "metrics.arrows.index",
      "layers.arrows",
      "events.jsonl",
      "samples.jsonl",
      "checkpoints",
      "checkpoints/step-8.safetensors",
      "checkpoints/step-8.safetensors.tmp",
      "export",
      "figures",
    ])
      expect(names, expected).toContain(expected);
    expect(names.some((n) => /^figures\/plotly-.*\.min\.js$/.test(n))).toBe(true);
    expect(names.some((n) => /^checkpoints\/damaged-/.test(n))).toBe(true);
    expect(names.some((n) => /^checkpoints\/abandoned-/.test(n))).toBe(true);
    expect(names.some((n) => /^events\.jsonl\.tail-/.test(n))).toBe(true);
  });

  it(
    "no symbolic or hard link planted for any of them makes a command change a file outside the run",
    { timeout: 1_800_000 },
    async () => {
      const problems: string[] = [];
      const refusals: string[] = [];
      let cases = 0;
      for (const target of targets) {
        for (const kind of target.dir ? (["symlink"] as const) : (["symlink", "hardlink"] as const)) {
          const caseDir = join(work, "cases", String(cases++));
          const run = join(caseDir, "run");
          const outside = join(caseDir, "outside");
          mkdirSync(outside, { recursive: true });
          execFileSync("cp", ["-r", states[target.firstOp]!, run]);
          const planted = join(run, target.rel);
          const victim = join(outside, "victim");
          mkdirSync(dirname(planted), { recursive: true });
          if (existsSync(planted) || isLink(planted)) {
            // The victim holds what the run had there, so the commands read what they expect.
            execFileSync("cp", ["-r", planted, victim]);
            rmSync(planted, { recursive: true, force: true });
          } else if (target.dir) mkdirSync(victim);
          else writeFileSync(victim, "a file outside the run\n");
          if (kind === "symlink") symlinkSync(victim, planted);
          else linkSync(victim, planted);
          const before = tree(outside);
          const errors = await runOps(run, target.firstOp);
          const after = tree(outside);
          const changed = [...new Set([...before.keys(), ...after.keys()])].filter(
            (k) => before.get(k)?.sum !== after.get(k)?.sum || before.get(k)?.kind !== after.get(k)?.kind,
          );
          if (changed.length > 0)
            problems.push(`${kind} at ${target.rel}: changed outside: ${changed.join(", ") || "(victim)"}`);
          for (const e of errors) {
            refusals.push(`${kind} at ${target.rel}: ${e.op}: ${e.error.split("\n")[0]}`);
            if (/Cannot read properties|is not a function|is not iterable/.test(e.error))
              problems.push(`${kind} at ${target.rel}: ${e.op}: internal error: ${e.error}`);
          }
          rmSync(caseDir, { recursive: true, force: true });
        }
      }
      console.log(`planted ${cases} links at ${targets.length} names; refusals:\n  ${refusals.join("\n  ")}`);
      expect(problems).toEqual([]);
      expect(cases).toBeGreaterThan(30);
    },
  );
});

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}
