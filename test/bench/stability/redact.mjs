// A script's own command line for its result file, with absolute paths (a machine's folders)
// replaced by the flag they were given for: "--home <home>".
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
