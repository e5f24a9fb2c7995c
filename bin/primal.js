#!/usr/bin/env node
// Entry point of the `primal` command (compiled TypeScript lives in dist/). The library's CLI
// plus the kernel package's `kernel` command (the library itself never imports the kernel).
import { main } from "../dist/src/cli/main.js";
import { kernelCommand } from "../dist/kernel/cli.js";

main(process.argv, [kernelCommand]).catch((e) => {
  process.stderr.write(`primal: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
