// `primal runs`: the runs under PRIMAL_HOME (or ./runs), newest first, as a table (or JSON),
// narrowed with --filter/--tag/--sweep and sorted with --sort. `primal tag` and `primal note`
// annotate a run.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { listRuns, type RunQuery } from "../tracking/runReader.js";
import { annotateRun, readAnnotations } from "../tracking/annotations.js";
import { resolveHome } from "../tracking/runStore.js";
import { RUN_FILES } from "../tracking/files.js";

const fmt = (x: number | null, d = 4) => (x === null || !Number.isFinite(x) ? "-" : x.toFixed(d));

export function printRuns(home: string | undefined, json: boolean, query: RunQuery = {}): void {
  const runs = listRuns(home, query);
  if (json) {
    process.stdout.write(JSON.stringify(runs) + "\n");
    return;
  }
  if (runs.length === 0) {
    const narrowed = query.filter !== undefined || query.tag !== undefined || query.sweep !== undefined;
    process.stdout.write(narrowed ? "no runs match\n" : "no runs yet (train one with `npx primal train`)\n");
    return;
  }
  const rows = runs.map((r) => [
    r.id,
    r.status ?? "?",
    String(r.step),
    `${r.preset ?? "?"}/${r.quant ?? "?"}`,
    fmt(r.lastLoss),
    fmt(r.bestValLoss),
    r.createdAt.replace("T", " ").slice(0, 19),
    r.tags.join(","),
    r.error ? `error: ${r.error}` : (r.statusReason ?? ""),
  ]);
  const head = ["id", "status", "step", "preset/quant", "loss", "best val", "created (UTC)", "tags", ""];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd() + "\n";
  process.stdout.write(line(head) + rows.map(line).join(""));
}

/** A run given as its directory or as its id under the home. */
export function resolveRunDir(run: string, home?: string): string {
  const asPath = resolve(run);
  if (existsSync(join(asPath, RUN_FILES.meta))) return asPath;
  if (!/[/\\]/.test(run) && run !== "." && run !== "..") {
    const inHome = join(resolveHome(home), run);
    if (existsSync(join(inHome, RUN_FILES.meta))) return inHome;
  }
  throw new Error(`no run '${run}' (give its directory, or its id with --home or PRIMAL_HOME)`);
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function addRunsCommands(program: Command, fail: (e: unknown) => never): void {
  program
    .command("runs")
    .description("list runs (newest first), optionally filtered and sorted")
    .option("--home <dir>", "runs directory")
    .option("--json", "JSON output")
    .option(
      "--filter <cond>",
      "KEY=VALUE (also != < <= > >= ~); KEY a config path such as knobs.flipRate, or status, sweep, name…; repeatable",
      collect,
    )
    .option("--tag <tag>", "only runs with this tag (repeatable: all of them)", collect)
    .option("--sweep <id>", "only the runs of this sweep")
    .option("--sort <key>", "sort by a metric or field (bestValLoss, custom.NAME, knobs.lr…); -KEY for descending")
    .option("--check", "verify every checksum of every stream (reads all telemetry: slower)")
    .action(
      (flags: {
        home?: string;
        json?: boolean;
        filter?: string[];
        tag?: string[];
        sweep?: string;
        sort?: string;
        check?: boolean;
      }) => {
        try {
          printRuns(flags.home, !!flags.json, {
            ...(flags.filter ? { filter: flags.filter } : {}),
            ...(flags.tag ? { tag: flags.tag } : {}),
            ...(flags.sweep ? { sweep: flags.sweep } : {}),
            ...(flags.sort ? { sort: flags.sort } : {}),
            ...(flags.check ? { check: true } : {}),
          });
        } catch (e) {
          fail(e);
        }
      },
    );

  program
    .command("tag <run> <tags...>")
    .description("add tags to a run (its directory or id); --remove takes them off")
    .option("--home <dir>", "runs directory (to find a run by id)")
    .option("--remove", "remove the tags instead")
    .action((run: string, tags: string[], flags: { home?: string; remove?: boolean }) => {
      try {
        const dir = resolveRunDir(run, flags.home);
        annotateRun(
          dir,
          tags.map((tag) => ({ kind: flags.remove ? ("untag" as const) : ("tag" as const), tag })),
        );
        process.stdout.write(`${dir}: ${readAnnotations(dir).tags.join(", ") || "(no tags)"}\n`);
      } catch (e) {
        fail(e);
      }
    });

  program
    .command("note <run> <text...>")
    .description("add a note to a run (its directory or id)")
    .option("--home <dir>", "runs directory (to find a run by id)")
    .action((run: string, words: string[], flags: { home?: string }) => {
      try {
        const dir = resolveRunDir(run, flags.home);
        annotateRun(dir, [{ kind: "note", text: words.join(" ") }]);
        process.stdout.write(`${dir}: ${readAnnotations(dir).notes.length} note(s)\n`);
      } catch (e) {
        fail(e);
      }
    });
}
