// `primal runs`: the runs under PRIMAL_HOME (or ./runs), newest first, as a table (or JSON).
import { listRuns } from "../tracking/runReader.js";

const fmt = (x: number | null, d = 4) => (x === null || !Number.isFinite(x) ? "-" : x.toFixed(d));

export function printRuns(home: string | undefined, json: boolean): void {
  const runs = listRuns(home);
  if (json) {
    process.stdout.write(JSON.stringify(runs) + "\n");
    return;
  }
  if (runs.length === 0) {
    process.stdout.write("no runs yet (train one with `npx primal train`)\n");
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
    r.error ? `error: ${r.error}` : "",
  ]);
  const head = ["id", "status", "step", "preset/quant", "loss", "best val", "created (UTC)", ""];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join("  ")
      .trimEnd() + "\n";
  process.stdout.write(line(head) + rows.map(line).join(""));
}
