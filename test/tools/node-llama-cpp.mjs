#!/usr/bin/env node
// Installs node-llama-cpp (pinned) on demand into .cache/test-tools/ (git-ignored), for the tests
// and the notebook that check an exported GGUF file with llama.cpp itself. It is not a dependency
// of PRIMAL: with all its prebuilt variants it weighs ~730 MB; here only the core package and the
// one prebuilt CPU binary package for this platform come from the npm registry (~85 MB), its
// install script is skipped (it would try to download or build llama.cpp) and nothing is fetched
// from anywhere else.
//
//   node test/tools/node-llama-cpp.mjs      (or: npm run test:tools) installs and prints the path
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const NODE_LLAMA_CPP_VERSION = "3.21.1";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const toolDir = join(repoRoot, ".cache", "test-tools", `node-llama-cpp-${NODE_LLAMA_CPP_VERSION}`);
const entry = join(toolDir, "node_modules", "node-llama-cpp", "dist", "index.js");

/** The prebuilt CPU binary package for this platform, or undefined when none exists. */
export function binaryPackage(platform = process.platform, arch = process.arch) {
  const names = {
    "linux-x64": "linux-x64",
    "linux-arm64": "linux-arm64",
    "darwin-arm64": "mac-arm64-metal",
    "darwin-x64": "mac-x64",
    "win32-x64": "win-x64",
    "win32-arm64": "win-arm64",
  };
  const n = names[`${platform}-${arch}`];
  return n ? `@node-llama-cpp/${n}` : undefined;
}

/**
 * Makes sure node-llama-cpp is installed; returns { entry } or { reason } saying why it is not
 * available (no prebuilt binary for this platform, npm registry unreachable, ...).
 */
export function ensureNodeLlamaCpp({ quiet = true } = {}) {
  const bin = binaryPackage();
  if (!bin) return { reason: `node-llama-cpp has no prebuilt binary for ${process.platform}-${process.arch}` };
  const binDir = join(toolDir, "node_modules", ...bin.split("/"));
  if (existsSync(entry) && existsSync(binDir)) return { entry, installed: false };
  if (process.env.PRIMAL_NO_TOOL_INSTALL === "1")
    return { reason: "node-llama-cpp is not installed and PRIMAL_NO_TOOL_INSTALL=1 forbids installing it" };
  mkdirSync(toolDir, { recursive: true });
  writeFileSync(
    join(toolDir, "package.json"),
    JSON.stringify({ private: true, description: "test tool cache (git-ignored)" }) + "\n",
  );
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const args = [
    "install",
    "--no-save",
    "--omit=optional",
    "--ignore-scripts",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`,
    `${bin}@${NODE_LLAMA_CPP_VERSION}`,
  ];
  const t0 = Date.now();
  const r = spawnSync(npm, args, {
    cwd: toolDir,
    encoding: "utf8",
    stdio: quiet ? "pipe" : "inherit",
    timeout: 600_000,
  });
  if (r.status !== 0 || !existsSync(entry)) {
    const tail = `${r.stderr ?? ""}${r.error ? String(r.error) : ""}`.trim().split("\n").slice(-3).join(" | ");
    return {
      reason: `could not install node-llama-cpp@${NODE_LLAMA_CPP_VERSION} from the npm registry (offline?): ${tail || `exit ${r.status}`}`,
    };
  }
  return { entry, installed: true, seconds: (Date.now() - t0) / 1000 };
}

/** Imports the installed node-llama-cpp (call ensureNodeLlamaCpp first). */
export async function importNodeLlamaCpp() {
  return import(pathToFileURL(entry).href);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const r = ensureNodeLlamaCpp({ quiet: false });
  if (r.reason) {
    console.error(r.reason);
    process.exit(1);
  }
  console.log(
    `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}: ${toolDir}${r.installed ? ` (installed in ${r.seconds.toFixed(1)} s)` : " (already installed)"}`,
  );
}
