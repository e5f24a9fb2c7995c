// `primal export RUN --format gguf`: writes a trained checkpoint as a GGUF file for llama.cpp.
import { Command, Option } from "commander";
import { intFlag } from "./numberFlags.js";
import { GGUF_EXPORT_TYPES, exportRunGGUF, type GGUFExportType } from "../export/llamaExport.js";

interface ExportFlags {
  step?: string;
  format: string;
  type: GGUFExportType;
  out?: string;
  force?: boolean;
  embedType?: "f16" | "f32";
  json?: boolean;
}

export function runExport(run: string, flags: ExportFlags): string {
  if (flags.format !== "gguf") throw new Error(`--format ${flags.format} is not supported (only gguf)`);
  const step = intFlag("step", flags.step, { min: 0 });
  const r = exportRunGGUF(run, {
    type: flags.type,
    ...(step !== undefined ? { step } : {}),
    ...(flags.out !== undefined ? { out: flags.out } : {}),
    ...(flags.embedType !== undefined ? { embedType: flags.embedType } : {}),
    force: !!flags.force,
  });
  if (flags.json) return JSON.stringify(r);
  const mb = (r.bytes / 1e6).toFixed(2);
  return [
    `wrote ${r.path}`,
    `  step ${r.step}, type ${r.type}, ${mb} MB for ${r.params} parameters (${r.bytesPerParam.toFixed(3)} bytes/parameter)`,
    `  ${r.exactness}`,
  ].join("\n");
}

/** Adds the `export` command to the program. */
export function addExportCommand(program: Command, fail: (e: unknown) => never): void {
  program
    .command("export <run>")
    .description("write a run's checkpoint as a GGUF file (llama.cpp, LM Studio, ollama, node-llama-cpp)")
    .option("--step <n>", "checkpoint step (default: the latest)")
    .addOption(new Option("--format <f>", "output format").choices(["gguf"]).makeOptionMandatory())
    .addOption(
      new Option("--type <t>", "tensor type of the linear weights").choices([...GGUF_EXPORT_TYPES]).default("auto"),
    )
    .addOption(
      new Option("--embed-type <t>", "token embedding / tied head type (default f16; f32 with --type f32)").choices([
        "f16",
        "f32",
      ]),
    )
    .option("--out <file>", "output file (default <run>/export/<run>-step<N>-<type>.gguf)")
    .option("--force", "replace an existing output file")
    .option("--json", "print the export report as JSON")
    .action((run: string, flags: ExportFlags) => {
      try {
        process.stdout.write(runExport(run, flags) + "\n");
      } catch (e) {
        fail(e);
      }
    });
}
