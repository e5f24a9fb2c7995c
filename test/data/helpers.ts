// Shared test helpers for the data layer (not a test file itself).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** The read-only shared copy of WikiText-2 (tests skip only where it is absent). */
export const SHARED_WIKITEXT = resolve(REPO_ROOT, "../shared/data/wikitext-2");
export const HAVE_WIKITEXT = existsSync(join(SHARED_WIKITEXT, "valid.txt"));

const made: string[] = [];

export function tempDir(prefix = "primal-data-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function cleanupTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}
