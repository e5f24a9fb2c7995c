// Module resolution for notebooks in any directory.
//
// Runtime: the kernel's NODE_PATH holds the kernelspec's node_modules (a `primal` link to this
// package) and the node_modules directories this package's own dependencies come from, so
// `require("primal")` and `require("apache-arrow")` work from any notebook directory.
//
// Types: tslab's TypeScript resolves modules the classic "node10" way, which ignores NODE_PATH.
// So the kernel shows TypeScript a virtual `<cwd>/node_modules` holding `primal` and the
// packages of those NODE_PATH directories. The virtual packages are not symlinks to TypeScript
// (realpath leaves them alone): otherwise a type such as apache-arrow's Table would be reached
// through `primal/node_modules/apache-arrow`, which tslab's declaration emit rejects as "not
// portable" (TS2742) and which would stop cells. A real `<cwd>/node_modules/<name>` (a project
// with its own packages) always wins.

import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** The parts of ts.sys that module resolution and the watch host read files through. */
export interface FileSystemHost {
  getCurrentDirectory(): string;
  fileExists(path: string): boolean;
  readFile(path: string, encoding?: string): string | undefined;
  directoryExists(path: string): boolean;
  realpath?(path: string): string;
  getDirectories(path: string): string[];
  [method: string]: unknown;
}

export interface VirtualModulesOptions {
  /** The notebook directory (tslab's cwd). */
  cwd: string;
  /** Packages given by their real root, e.g. { primal: "/path/to/package" }. */
  packages: Record<string, string>;
  /** node_modules directories searched, in order, for any other package (like NODE_PATH). */
  searchDirs: string[];
  /**
   * Synthetic files, path relative to node_modules → content. "node10" resolution tries
   * `primal/kernel.d.ts` before the `kernel/` directory (the kernel's TypeScript sources), so
   * that file re-exports the compiled declarations.
   */
  files?: Record<string, string>;
  /** Real-existence check (injectable for tests). */
  exists?: (path: string) => boolean;
}

const slash = (p: string): string => p.replace(/\\/g, "/").replace(/\/+$/, "");

/**
 * node_modules directories Node searches for this package's dependencies: `<dir>/node_modules`
 * for the package root and each of its ancestors, where it exists. In a checkout that is the
 * package's own node_modules; in an npm install, the node_modules the package sits in.
 */
export function dependencyDirs(root: string, exists: (p: string) => boolean = existsSync): string[] {
  const out: string[] = [];
  let dir = root;
  for (;;) {
    if (basename(dir) !== "node_modules") {
      const nm = join(dir, "node_modules");
      if (exists(nm)) out.push(nm);
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return out;
}

/**
 * A function mapping paths under `<cwd>/node_modules` to real files (see the file comment), and
 * telling which paths it mapped. Paths elsewhere come back unchanged.
 */
export function virtualModules(opts: VirtualModulesOptions): {
  map(path: string): string;
  isVirtual(path: string): boolean;
  synthetic(path: string): string | undefined;
} {
  const exists = opts.exists ?? existsSync;
  const base = `${slash(opts.cwd)}/node_modules`;
  const packages = Object.fromEntries(Object.entries(opts.packages).map(([k, v]) => [k, slash(v)]));
  const dirs = opts.searchDirs.map(slash);
  const files = opts.files ?? {};
  const realCache = new Map<string, boolean>();
  const hasReal = (name: string): boolean => {
    let r = realCache.get(name);
    if (r === undefined) {
      r = exists(`${base}/${name}`);
      realCache.set(name, r);
    }
    return r;
  };

  const map = (path: string): string => {
    const p = slash(path);
    if (!p.startsWith(`${base}/`)) return path;
    const rest = p.slice(base.length + 1);
    const parts = rest.split("/");
    const scoped = parts[0]?.startsWith("@") ?? false;
    const nameParts = scoped ? 2 : 1;
    if (parts.length < nameParts) {
      // A bare scope directory such as node_modules/@types (type roots).
      if (hasReal(rest)) return path;
      for (const d of dirs) if (exists(`${d}/${rest}`)) return `${d}/${rest}`;
      return path;
    }
    const name = parts.slice(0, nameParts).join("/");
    const sub = parts.slice(nameParts).join("/");
    if (hasReal(name)) return path;
    const root = packages[name];
    if (root !== undefined) {
      // Synthetic files stand in for the package.json (an existing file) for watching and mtime.
      if (files[rest] !== undefined) return `${root}/package.json`;
      // The package's own nested node_modules stays invisible: its dependencies are reached as
      // top-level packages instead (portable type names).
      if (sub === "node_modules" || sub.startsWith("node_modules/")) return `${root}/.primal-kernel-hidden/${sub}`;
      return sub ? `${root}/${sub}` : root;
    }
    for (const d of dirs) {
      if (exists(`${d}/${name}`)) return sub ? `${d}/${name}/${sub}` : `${d}/${name}`;
    }
    return path;
  };
  const synthetic = (path: string): string | undefined => {
    const p = slash(path);
    if (!p.startsWith(`${base}/`)) return undefined;
    const rest = p.slice(base.length + 1);
    const content = files[rest];
    if (content === undefined) return undefined;
    const name = rest.startsWith("@") ? rest.split("/").slice(0, 2).join("/") : (rest.split("/")[0] as string);
    return hasReal(name) ? undefined : content;
  };
  return { map, isVirtual: (path: string) => map(path) !== path, synthetic };
}

const PATH_METHODS = [
  "fileExists",
  "readFile",
  "directoryExists",
  "getDirectories",
  "readDirectory",
  "getModifiedTime",
  "getFileSize",
  "watchFile",
  "watchDirectory",
] as const;

/**
 * Patches a ts.sys-like object in place so TypeScript sees the virtual node_modules of
 * `virtualModules` under its current directory. realpath leaves virtual paths as they are.
 */
export function mountVirtualModules(sys: FileSystemHost, opts: Omit<VirtualModulesOptions, "cwd">): void {
  const vm = virtualModules({ ...opts, cwd: sys.getCurrentDirectory() });
  const target = sys as Record<string, unknown>;
  for (const method of PATH_METHODS) {
    const original = target[method];
    if (typeof original !== "function") continue;
    const fn = original as (path: string, ...rest: unknown[]) => unknown;
    target[method] = function (this: unknown, path: string, ...rest: unknown[]) {
      return fn.call(sys, typeof path === "string" ? vm.map(path) : path, ...rest);
    };
  }
  const mappedExists = target.fileExists as FileSystemHost["fileExists"];
  const mappedRead = target.readFile as FileSystemHost["readFile"];
  target.fileExists = (path: string) => (vm.synthetic(path) !== undefined ? true : mappedExists.call(sys, path));
  target.readFile = (path: string, encoding?: string) => vm.synthetic(path) ?? mappedRead.call(sys, path, encoding);
  const realpath = sys.realpath;
  if (typeof realpath === "function") {
    target.realpath = (path: string) => (vm.isVirtual(path) ? path : realpath.call(sys, path));
  }
}
