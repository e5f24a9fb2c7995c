/** Default locations on disk, overridable by environment variables. */
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";

/** Environment variable naming the cache directory (token caches, downloaded datasets). */
export const CACHE_DIR_ENV = "PRIMAL_CACHE_DIR";

/**
 * `$PRIMAL_CACHE_DIR`, else the user's cache folder: `$XDG_CACHE_HOME/primal`, or
 * `~/.cache/primal` (the XDG default). Caches stay out of notebook and project folders.
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[CACHE_DIR_ENV];
  if (fromEnv !== undefined && fromEnv !== "") return resolve(fromEnv);
  // The XDG spec ignores relative values.
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), ".cache"), "primal");
}
