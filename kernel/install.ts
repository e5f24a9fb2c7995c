// Registers the PRIMAL kernel with Jupyter: writes a kernelspec directory (kernel.json, logos,
// and node_modules/primal → this package, which the kernel's NODE_PATH points at), and the
// classic Notebook extension that draws figures (nbextensions/primal: main.js and plotly.js,
// enabled by nbconfig/notebook.d/primal.json). Written directly, so neither `jupyter
// kernelspec` nor `jupyter nbextension` is needed, in the locations Jupyter searches:
//   --user (default)   `jupyter --data-dir`/kernels, `jupyter --config-dir`/nbconfig
//   --sys-prefix       <python sys.prefix>/share/jupyter/kernels, <sys.prefix>/etc/jupyter/nbconfig
//   --prefix P         P/share/jupyter/kernels, P/etc/jupyter/nbconfig
//                      (then JUPYTER_PATH=P/share/jupyter JUPYTER_CONFIG_PATH=P/etc/jupyter)
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { deflateSync } from "node:zlib";
import { plotlyBundlePath } from "../src/plots/html.js";
import { packageRoot, packageVersion } from "../src/paths.js";
import { dependencyDirs } from "./modules.js";

export const KERNEL_NAME = "primal";
export const KERNEL_DISPLAY_NAME = "PRIMAL (TypeScript)";

export interface KernelLocationOptions {
  /** Per-user kernels directory (the default). */
  user?: boolean;
  /** The kernels directory of the Python environment (`python3`, or $PRIMAL_PYTHON). */
  sysPrefix?: boolean;
  /** Install under PREFIX/share/jupyter/kernels. */
  prefix?: string;
}

export interface KernelInstallOptions extends KernelLocationOptions {
  /** Kernelspec name (directory name); default "primal". */
  name?: string;
  /** Display name; default "PRIMAL (TypeScript)". */
  displayName?: string;
  /** Node executable the kernel runs on; default the one running this install. */
  node?: string;
}

function run(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 30_000 }).trim();
  } catch {
    return null;
  }
}

/** Jupyter's per-user data directory without asking Jupyter (mirrors jupyter_core). */
function defaultUserDataDir(): string {
  if (process.env.JUPYTER_DATA_DIR) return process.env.JUPYTER_DATA_DIR;
  const home = homedir();
  if (process.platform === "darwin") return join(home, "Library", "Jupyter");
  if (process.platform === "win32") return join(process.env.APPDATA ?? join(home, "AppData", "Roaming"), "jupyter");
  return join(process.env.XDG_DATA_HOME || join(home, ".local", "share"), "jupyter");
}

/** Jupyter's per-user config directory without asking Jupyter (mirrors jupyter_core). */
function defaultUserConfigDir(): string {
  return process.env.JUPYTER_CONFIG_DIR || join(homedir(), ".jupyter");
}

/** The data directory (…/share/jupyter) and config directory (…/etc/jupyter) of a location. */
export function jupyterDirs(opts: KernelLocationOptions = {}): { data: string; config: string } {
  const chosen = [opts.user === true, opts.sysPrefix === true, opts.prefix !== undefined].filter(Boolean).length;
  if (chosen > 1) throw new Error("kernel install: choose one of --user, --sys-prefix, --prefix");
  if (opts.prefix !== undefined) {
    if (opts.prefix === "") throw new Error("kernel install: --prefix needs a directory");
    return {
      data: join(resolve(opts.prefix), "share", "jupyter"),
      config: join(resolve(opts.prefix), "etc", "jupyter"),
    };
  }
  if (opts.sysPrefix) {
    const python = process.env.PRIMAL_PYTHON || "python3";
    const prefix = run(python, ["-c", "import sys; print(sys.prefix)"]);
    if (!prefix)
      throw new Error(`kernel install --sys-prefix: could not run ${python} to find sys.prefix (set PRIMAL_PYTHON)`);
    return { data: join(prefix, "share", "jupyter"), config: join(prefix, "etc", "jupyter") };
  }
  return {
    data: run("jupyter", ["--data-dir"]) || defaultUserDataDir(),
    config: run("jupyter", ["--config-dir"]) || defaultUserConfigDir(),
  };
}

/** The kernels directory an install with these options writes to. */
export function kernelsDir(opts: KernelLocationOptions = {}): string {
  return join(jupyterDirs(opts).data, "kernels");
}

/** The classic Notebook extension's source (plain JavaScript, shipped as is). */
export function notebookExtensionSource(): string {
  return join(packageRoot(), "kernel", "nbextension", "main.js");
}

const EXTENSION = "primal";
const EXTENSION_MARKER = "PRIMAL's extension for the classic Jupyter Notebook";

/**
 * Installs the classic Notebook extension that draws figures: nbextensions/primal/{main.js,
 * plotly.min.js} under the data directory, enabled in nbconfig/notebook.d/primal.json under
 * the config directory. Returns the two paths.
 */
function installNotebookExtension(dirs: { data: string; config: string }): { files: string; config: string } {
  const files = join(dirs.data, "nbextensions", EXTENSION);
  mkdirSync(files, { recursive: true });
  copyFileSync(notebookExtensionSource(), join(files, "main.js"));
  // A copy, not a link: the Notebook server serves only files inside its nbextensions folders.
  copyFileSync(plotlyBundlePath(), join(files, "plotly.min.js"));
  const config = join(dirs.config, "nbconfig", "notebook.d", `${EXTENSION}.json`);
  mkdirSync(dirname(config), { recursive: true });
  writeFileSync(config, JSON.stringify({ load_extensions: { [`${EXTENSION}/main`]: true } }, null, 2) + "\n");
  return { files, config };
}

/** Removes what installNotebookExtension wrote (only when main.js is ours). */
function uninstallNotebookExtension(dirs: { data: string; config: string }): boolean {
  const files = join(dirs.data, "nbextensions", EXTENSION);
  const main = join(files, "main.js");
  if (!existsSync(main) || !readFileSync(main, "utf8").includes(EXTENSION_MARKER)) return false;
  rmSync(files, { recursive: true, force: true });
  rmSync(join(dirs.config, "nbconfig", "notebook.d", `${EXTENSION}.json`), { force: true });
  return true;
}

/** The launcher kernel.json starts: dist/kernel/launch.js of this package. */
export function launcherPath(): string {
  return join(packageRoot(), "dist", "kernel", "launch.js");
}

/** The kernel.json of a kernelspec installed in `specDir`. */
export function kernelJson(specDir: string, opts: KernelInstallOptions = {}): Record<string, unknown> {
  return {
    argv: [
      opts.node ?? process.execPath,
      // require() of ES modules (this package, from tslab's CommonJS cells) is stable in
      // practice on Node >= 20.19 but still flagged experimental; keep cells free of the notice.
      "--disable-warning=ExperimentalWarning",
      launcherPath(),
      "{connection_file}",
    ],
    display_name: opts.displayName ?? KERNEL_DISPLAY_NAME,
    language: "typescript",
    interrupt_mode: "signal",
    // The kernelspec's node_modules (primal) first, then where primal's dependencies live, so
    // cells can also import apache-arrow & co. (The launcher mirrors this list for TypeScript.)
    env: { NODE_PATH: [join(specDir, "node_modules"), ...dependencyDirs(packageRoot())].join(delimiter) },
    metadata: { primal: { version: packageVersion(), root: packageRoot() }, debugger: false },
  };
}

// ---------------------------------------------------------------- logo

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "ascii");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

// The five code levels -1, -b, 0, +b, +1 as bars (the "Harmonic Bridge" grid), in the plots'
// level colors.
const LEVELS: [number, [number, number, number]][] = [
  [1.0, [0x1f, 0x4e, 0x8c]],
  [0.667, [0x7f, 0xb0, 0xdd]],
  [0.12, [0xb8, 0xb8, 0xb8]],
  [0.667, [0xec, 0x9a, 0x86]],
  [1.0, [0xb2, 0x18, 0x2b]],
];

/** A size×size RGBA PNG of the logo. */
export function logoPng(size: number): Buffer {
  const raw = Buffer.alloc(size * (1 + size * 4));
  const pad = Math.round(size * 0.1);
  const bar = (size - 2 * pad) / LEVELS.length;
  const mid = size / 2;
  const half = mid - pad;
  for (let y = 0; y < size; y++) {
    const row = y * (1 + size * 4);
    raw[row] = 0; // filter: none
    for (let x = 0; x < size; x++) {
      const k = Math.floor((x - pad) / bar);
      const level = x >= pad && k >= 0 && k < LEVELS.length ? LEVELS[k] : undefined;
      const inGap = (x - pad) % bar > bar * 0.8;
      let rgba = [255, 255, 255, 0];
      if (level && !inGap) {
        const [h, [r, g, b]] = level;
        // Bars grow from the middle: negative levels down, positive up, zero a thin band.
        const sign = k < 2 ? -1 : k > 2 ? 1 : 0;
        const top = sign >= 0 ? mid - Math.max(1, h * half) : mid;
        const bottom = sign <= 0 ? mid + Math.max(1, h * half) : mid;
        if (y >= top && y < bottom) rgba = [r, g, b, 255];
      }
      raw.set(rgba, row + 1 + x * 4);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", deflateSync(raw)),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
}

function logoSvg(): string {
  const pad = 6.4;
  const bar = (64 - 2 * pad) / LEVELS.length;
  const rects = LEVELS.map(([h, [r, g, b]], k) => {
    const sign = k < 2 ? -1 : k > 2 ? 1 : 0;
    const len = Math.max(1, h * (32 - pad));
    const y = sign >= 0 ? 32 - len : 32;
    const height = sign === 0 ? 2 * len : len;
    return `<rect x="${(pad + k * bar).toFixed(2)}" y="${(sign === 0 ? 32 - len : y).toFixed(2)}" width="${(bar * 0.8).toFixed(2)}" height="${height.toFixed(2)}" fill="rgb(${r},${g},${b})"/>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">${rects.join("")}</svg>\n`;
}

// ---------------------------------------------------------------- install / uninstall

const SPEC_FILES = ["kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"];

function removeLink(path: string): void {
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) unlinkSync(path);
    else rmSync(path, { recursive: true, force: true });
  } catch {
    // absent
  }
}

/**
 * Writes the kernelspec; replaces an existing one of the same name. Resolves with a message
 * naming the directory.
 */
export async function installKernel(opts: KernelInstallOptions = {}): Promise<string> {
  const name = opts.name ?? KERNEL_NAME;
  if (!/^[a-z0-9._-]+$/i.test(name)) throw new Error(`kernel install: invalid kernel name "${name}"`);
  const launcher = launcherPath();
  if (!existsSync(launcher)) {
    throw new Error(`kernel install: the launcher ${launcher} is missing; build the package first (npm run build:ts)`);
  }
  const dirs = jupyterDirs(opts);
  const dir = join(dirs.data, "kernels", name);
  mkdirSync(join(dir, "node_modules"), { recursive: true });
  for (const f of SPEC_FILES) rmSync(join(dir, f), { force: true });
  const link = join(dir, "node_modules", "primal");
  removeLink(link);
  // A junction on Windows needs no privileges; elsewhere the type argument is ignored.
  symlinkSync(packageRoot(), link, "junction");
  writeFileSync(join(dir, "kernel.json"), JSON.stringify(kernelJson(dir, opts), null, 2) + "\n");
  writeFileSync(join(dir, "logo-32x32.png"), logoPng(32));
  writeFileSync(join(dir, "logo-64x64.png"), logoPng(64));
  writeFileSync(join(dir, "logo-svg.svg"), logoSvg());
  const ext = installNotebookExtension(dirs);
  const hint =
    opts.prefix !== undefined
      ? `\n(Jupyter finds them when JUPYTER_PATH includes ${dirs.data} and JUPYTER_CONFIG_PATH includes ${dirs.config})`
      : "";
  return (
    `Installed kernelspec "${name}" (${opts.displayName ?? KERNEL_DISPLAY_NAME}) in ${dir}\n` +
    `and the classic Notebook extension that draws figures in ${ext.files} (enabled by ${ext.config})${hint}`
  );
}

/** Removes the kernelspec. Resolves with a message; not an error when it is not installed. */
export async function uninstallKernel(opts: KernelInstallOptions = {}): Promise<string> {
  const name = opts.name ?? KERNEL_NAME;
  if (!/^[a-z0-9._-]+$/i.test(name)) throw new Error(`kernel uninstall: invalid kernel name "${name}"`);
  const dirs = jupyterDirs(opts);
  const dir = join(dirs.data, "kernels", name);
  const extension = uninstallNotebookExtension(dirs);
  if (!existsSync(dir))
    return `No kernelspec "${name}" in ${dir}; nothing to remove${extension ? " (removed the Notebook extension)" : ""}`;
  const kj = join(dir, "kernel.json");
  if (existsSync(kj)) {
    // Refuse to delete a directory that is not a PRIMAL kernelspec (e.g. a name clash).
    try {
      const spec = JSON.parse(readFileSync(kj, "utf8")) as { metadata?: { primal?: unknown } };
      if (!spec.metadata?.primal) throw new Error("not ours");
    } catch {
      throw new Error(
        `kernel uninstall: ${dir} is not a PRIMAL kernelspec; remove it with \`jupyter kernelspec remove ${name}\``,
      );
    }
  }
  // Unlink first so the removal can never walk into the package through the link.
  removeLink(join(dir, "node_modules", "primal"));
  rmSync(dir, { recursive: true, force: true });
  return `Removed kernelspec "${name}" from ${dir}${extension ? " and the Notebook extension" : ""}`;
}
