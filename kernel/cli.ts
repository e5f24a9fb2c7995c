// `primal kernel install|uninstall`: registered into the `primal` command by bin/primal.js.
import type { Command } from "commander";
import { installKernel, uninstallKernel, type KernelLocationOptions } from "./install.js";

function fail(e: unknown): never {
  process.stderr.write(`primal: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}

export function kernelCommand(program: Command): void {
  const kernel = program.command("kernel").description("the Jupyter kernel (PRIMAL (TypeScript) on tslab)");
  kernel
    .command("install")
    .description("register the kernelspec")
    .option("--user", "install for the current user (default)")
    .option("--sys-prefix", "install into sys.prefix (virtualenv/conda)")
    .option("--prefix <dir>", "install under a prefix")
    .action(async (flags: KernelLocationOptions) => {
      try {
        process.stdout.write((await installKernel(flags)) + "\n");
      } catch (e) {
        fail(e);
      }
    });
  kernel
    .command("uninstall")
    .description("remove the kernelspec")
    .option("--user")
    .option("--sys-prefix")
    .option("--prefix <dir>")
    .action(async (flags: KernelLocationOptions) => {
      try {
        process.stdout.write((await uninstallKernel(flags)) + "\n");
      } catch (e) {
        fail(e);
      }
    });
}
