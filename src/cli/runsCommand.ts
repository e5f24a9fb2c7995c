// `primal runs`: the runs under PRIMAL_HOME (or ./runs), newest first.
import { listRuns } from "../tracking/runReader.js";

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
  for (const r of runs) process.stdout.write(JSON.stringify(r) + "\n");
}
