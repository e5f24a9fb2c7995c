/**
 * Finds node-llama-cpp, to run an exported GGUF file in llama.cpp from a notebook. It is not a
 * dependency of PRIMAL (its prebuilt binaries are large): this loads the user's own install, or
 * the CPU-only copy `npm run test:tools` puts in the checkout's git-ignored .cache/test-tools.
 * Loaded from here (a real ES module) because notebook cells cannot import ES modules that use
 * top-level await themselves.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { packageRoot } from "../paths.js";

export const NODE_LLAMA_CPP_VERSION = "3.21.1";

export interface NodeLlamaCppLoad {
  /** The node-llama-cpp module (untyped: it is not a dependency), or undefined with the reason. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an optional module without types here
  lib?: any;
  reason?: string;
  from?: string;
}

export async function loadNodeLlamaCpp(): Promise<NodeLlamaCppLoad> {
  const cached = join(
    packageRoot(),
    ".cache",
    "test-tools",
    `node-llama-cpp-${NODE_LLAMA_CPP_VERSION}`,
    "node_modules",
    "node-llama-cpp",
    "dist",
    "index.js",
  );
  const tries = existsSync(cached) ? [pathToFileURL(cached).href, "node-llama-cpp"] : ["node-llama-cpp"];
  const errors: string[] = [];
  for (const spec of tries) {
    try {
      return { lib: await import(spec), from: spec };
    } catch (e) {
      errors.push((e as Error).message.split("\n")[0] ?? String(e));
    }
  }
  return {
    reason: `node-llama-cpp is not installed (npm install node-llama-cpp@${NODE_LLAMA_CPP_VERSION}, or npm run test:tools in the PRIMAL checkout): ${errors.join("; ")}`,
  };
}
