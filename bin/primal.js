#!/usr/bin/env node
// Entry point of the `primal` command (compiled TypeScript lives in dist/).
import { main } from "../dist/src/cli/main.js";

main(process.argv).catch((e) => {
  process.stderr.write(`primal: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
