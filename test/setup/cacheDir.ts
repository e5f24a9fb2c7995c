// Vitest global setup: token caches and downloads go to a temporary cache folder for the whole
// run (inherited by the test workers and the kernels and CLIs they start), so tests never
// write the user's cache folder. A PRIMAL_CACHE_DIR set by the caller is kept.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function setup(): () => void {
  if (process.env.PRIMAL_CACHE_DIR) return () => {};
  const dir = mkdtempSync(join(tmpdir(), "primal-test-cache-"));
  process.env.PRIMAL_CACHE_DIR = dir;
  process.env.XDG_CACHE_HOME = join(dir, "xdg");
  return () => rmSync(dir, { recursive: true, force: true });
}
