/** Default locations on disk, overridable by environment variables. */
import { resolve } from "node:path";

/** Environment variable naming the cache directory (token caches, downloaded datasets). */
export const CACHE_DIR_ENV = "PRIMAL_CACHE_DIR";

/** `$PRIMAL_CACHE_DIR`, else `data/cache` under the current directory (git-ignored). */
export function defaultCacheDir(): string {
  const fromEnv = process.env[CACHE_DIR_ENV];
  return resolve(fromEnv !== undefined && fromEnv !== "" ? fromEnv : "data/cache");
}
