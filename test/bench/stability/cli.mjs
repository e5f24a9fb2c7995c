// The command-line helpers the stability scripts share: their flags, and their own command line
// as recorded in a result file.
import { join } from "node:path";

/** The repository root (the scripts load the compiled package from its dist/). */
export const ROOT = join(import.meta.dirname, "..", "..", "..");

/** `--name value` flags: arg(name) is required, arg(name, fallback) is not. */
export function flags(argv) {
  return (name, fallback) => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
    if (fallback === undefined) throw new Error(`--${name} is required`);
    return fallback;
  };
}

/**
 * A script's own command line for its result file, with absolute paths (a machine's folders)
 * replaced by the flag they were given for: "--home <home>".
 */
export function commandLine(script, argv) {
  const out = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const flag = i > 0 && argv[i - 1].startsWith("--") ? argv[i - 1].slice(2) : "path";
    if (a.startsWith("/")) out.push(`<${flag}>`);
    else out.push(/[\s"'$]/.test(a) ? `'${a.replace(/'/g, "'\\''")}'` : a);
  }
  return `node ${script} ${out.join(" ")}`;
}
