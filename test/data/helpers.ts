// Shared test helpers for the data layer (not a test file itself).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export { fixtureWikiTextDir, REAL_WIKITEXT_DIR, REAL_WIKITEXT_SKIP } from "../fixtures/wikitext.js";

const made: string[] = [];

export function tempDir(prefix = "primal-data-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function cleanupTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}
