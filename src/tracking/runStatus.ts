/**
 * A run's status as a reader should report it. run.json says "running" from the moment a writer
 * opens a run until it closes it, so a writer that died (kill -9, a kernel shut down without
 * dispose(), a reboot) would read "running" forever; the lock file tells the truth:
 *
 * - `crashed`: run.json says running, and the lock's holder is gone (its pid is not running on
 *   this host, the pid was reused, or, from another host, its heartbeat stopped);
 * - `abandoned`: run.json says running but there is no lock: the writer exited normally (which
 *   frees the lock) without finishing the run, e.g. a notebook kernel shut down without
 *   `dispose()`.
 *
 * Any other status is run.json's own. Both new ones resume like a stopped run.
 */
import type { RunMeta, RunStatus } from "./runStore.js";
import { lockState } from "./runLock.js";

export type LiveStatus = RunStatus | "crashed" | "abandoned";
export const LIVE_STATUSES: readonly LiveStatus[] = [
  "running",
  "finished",
  "stopped",
  "failed",
  "crashed",
  "abandoned",
];

export interface StatusReport {
  status: LiveStatus;
  /** Why a run reads crashed or abandoned. */
  reason?: string;
}

export function liveStatus(dir: string, meta: Pick<RunMeta, "status">, now = Date.now()): StatusReport {
  if (meta.status !== "running") return { status: meta.status };
  const lock = lockState(dir, now);
  if (lock.state === "held") return { status: "running" };
  if (lock.state === "dead") return { status: "crashed", reason: `its writer died: ${lock.reason}` };
  return { status: "abandoned", reason: "its writer exited without finishing the run" };
}
