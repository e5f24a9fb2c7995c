// Global setup: every test process writes caches and runs under one fresh temporary folder, so
// no test reads a cache or run left by an earlier run, a user's home, or the repository's
// data/cache. PRIMAL_WIKITEXT_DIR is left as the caller set it: it is the one way in for the
// real WikiText-2, and tests that need it skip with the reason when it is unset.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), "primal-test-"));
  process.env["PRIMAL_CACHE_DIR"] = join(root, "cache");
  process.env["XDG_CACHE_HOME"] = join(root, "xdg-cache");
  process.env["PRIMAL_HOME"] = join(root, "runs");
  return () => rmSync(root, { recursive: true, force: true });
}
