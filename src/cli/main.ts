// The `primal` command line.
import { Command, Option } from "commander";
import { Trainer } from "../trainer.js";
import { PRESET_NAMES } from "../presets.js";
import { packageVersion } from "../paths.js";
import { configFromFlags, finish, runTraining, type TrainFlags } from "./trainCommand.js";
import { intFlag } from "./numberFlags.js";
import { addRunsCommands } from "./runsCommand.js";
import { formatPlanning, planMemory } from "../memoryPlan.js";
import { addExportCommand } from "./exportCommand.js";
import { addSweepCommand } from "./sweepCommand.js";
import { addBoardCommand } from "./boardCommand.js";

function fail(e: unknown): never {
  process.stderr.write(`primal: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}

/** Adds a command (with its subcommands) to the `primal` program. */
export type CommandRegistrar = (program: Command) => void;

export async function main(argv: string[], extraCommands: readonly CommandRegistrar[] = []): Promise<void> {
  const program = new Command();
  program
    .name("primal")
    .description("Ternary-weight LM training with Poltergeist quantization")
    .version(packageVersion());

  program
    .command("train")
    .description("train a model (the main job) and evaluate it")
    .addOption(new Option("--preset <name>", "model preset").choices(PRESET_NAMES).default("small"))
    .addOption(new Option("--quant <name>", "quantizer").choices(["fp", "ste", "poltergeist"]).default("poltergeist"))
    .option("--steps <n>", "optimizer steps", "300")
    .addOption(new Option("--device <d>", "compute device").choices(["cpu", "cuda", "auto"]).default("auto"))
    .option("--json", "print one final JSON line with the results")
    .option("--batch <n>", "windows per micro-batch")
    .option("--accum <n>", "micro-batches per step")
    .option("--seed <n>", "random seed")
    .option("--lr <x>", "peak learning rate")
    .option("--bridge <x>", "harmonic bridge value in (0,1), or 'off'")
    .option("--flip-rate <x>", "Poltergeist flip rate")
    .option("--data <path>", "training text: a .txt file or a directory of .txt files (default: embedded corpus)")
    .option("--tokenizer <name>", "bytes or gpt2 (default from the preset)")
    .option("--wikitext <dir>", "WikiText-2 directory for evaluation (or env PRIMAL_WIKITEXT_DIR)")
    .option("--eval-tokens <n>", "cap on evaluation tokens per split (default 131072; 0 = all)")
    .option("--eval-every <n>", "evaluate every n steps (0 = only at the end)")
    .option("--sample-every <n>", "salad test every n steps")
    .option("--checkpoint-every <n>", "checkpoint every n steps")
    .option("--threads <n>", "CPU threads (0 = all cores)")
    .option("--micro-batch <n>", "windows per executed chunk (divides --batch), or 'auto'")
    .addOption(new Option("--recompute <mode>", "activation recompute").choices(["none", "block", "auto"]))
    .option("--memory-budget <size>", "device memory to fit, e.g. 10GiB (picks micro-batch and recompute)")
    .option("--name <name>", "run name")
    .option("--home <dir>", "runs directory (default PRIMAL_HOME or ./runs)")
    .addOption(
      new Option(
        "--distributed <backend>",
        "data parallel over the ranks of an mpirun/srun launch (docs/distributed.md)",
      ).choices(["mpi", "nccl"]),
    )
    .action(async (flags: TrainFlags) => {
      try {
        const trainer = await Trainer.create(configFromFlags(flags));
        if (!flags.json && trainer.rank === 0)
          process.stderr.write(
            `training ${trainer.config.preset}/${trainer.config.quant} on ${trainer.device}; run ${trainer.runDir}\n`,
          );
        const summary = await runTraining(trainer, trainer.config.steps, !!flags.json);
        await finish(trainer, summary, !!flags.json);
      } catch (e) {
        fail(e);
      }
    });

  program
    .command("resume <run>")
    .description("continue a run from its latest checkpoint (or from a checkpoint file)")
    .requiredOption("--steps <n>", "further steps")
    .addOption(new Option("--device <d>", "compute device").choices(["cpu", "cuda", "auto"]))
    .option("--memory-budget <size>", "device memory to fit on this device, e.g. 10GiB")
    .addOption(
      new Option(
        "--distributed <backend>",
        "data parallel (rank 0 reads the checkpoint, the others receive it)",
      ).choices(["mpi", "nccl"]),
    )
    .option("--json", "print one final JSON line")
    .option("--eval", "evaluate after the last step (the run's eval cap and progress, as train)")
    .option("--threads <n>", "CPU threads on this machine (0 = all cores)")
    .option(
      "--fork",
      "resume from a checkpoint older than the newest: start a branch (later checkpoints are moved aside)",
    )
    .option("--data <path>", "the training text (needed when run.json names a corpus file outside the run folder)")
    .option(
      "--change-world-size",
      "continue on another number of ranks than the checkpoint was trained on: the windows per step change with it",
    )
    .action(
      async (
        run: string,
        flags: {
          steps: string;
          device?: "cpu" | "cuda" | "auto";
          memoryBudget?: string;
          distributed?: "mpi" | "nccl";
          json?: boolean;
          eval?: boolean;
          threads?: string;
          fork?: boolean;
          data?: string;
          changeWorldSize?: boolean;
        },
      ) => {
        try {
          const steps = intFlag("steps", flags.steps, { min: 0 })!;
          const threads = intFlag("threads", flags.threads);
          if (!flags.json) process.stderr.write(`loading ${run}…\n`);
          const trainer = await Trainer.resume(run, {
            ...(flags.device ? { device: flags.device } : {}),
            ...(flags.memoryBudget !== undefined ? { memoryBudget: flags.memoryBudget } : {}),
            ...(flags.distributed ? { distributed: flags.distributed } : {}),
            ...(threads !== undefined ? { threads } : {}),
            ...(flags.fork ? { fork: true } : {}),
            ...(flags.data !== undefined ? { corpus: flags.data } : {}),
            ...(flags.changeWorldSize ? { changeWorldSize: true } : {}),
          });
          if (!flags.json && trainer.rank === 0)
            process.stderr.write(`resuming ${trainer.runDir} at step ${trainer.step}\n`);
          const evaluate = { evaluate: !!flags.eval };
          const summary = await runTraining(trainer, steps, !!flags.json, evaluate);
          await finish(trainer, summary, !!flags.json, evaluate);
        } catch (e) {
          fail(e);
        }
      },
    );

  program
    .command("plan")
    .description("predict peak memory of each micro-batch/recompute plan for a config, without training")
    .addOption(new Option("--preset <name>", "model preset").choices(PRESET_NAMES).default("small"))
    .addOption(new Option("--quant <name>", "quantizer").choices(["fp", "ste", "poltergeist"]).default("poltergeist"))
    .addOption(new Option("--device <d>", "compute device").choices(["cpu", "cuda", "auto"]).default("auto"))
    .option("--batch <n>", "windows per micro-batch")
    .option("--accum <n>", "micro-batches per step")
    .option("--micro-batch <n>", "fix the micro-batch chunk, or 'auto'")
    .addOption(new Option("--recompute <mode>", "fix activation recompute").choices(["none", "block", "auto"]))
    .option("--memory-budget <size>", "device memory to fit, e.g. 10GiB")
    .option("--ranks <n>", "data-parallel ranks: adds the bytes each rank all-reduces per step", "1")
    .option("--json", "JSON output")
    .action((flags: TrainFlags) => {
      try {
        const ranks = intFlag("ranks", flags.ranks ?? "1", { min: 1 })!;
        const p = planMemory(configFromFlags({ ...flags, steps: "1" }), { worldSize: ranks });
        process.stdout.write((flags.json ? JSON.stringify(p) : formatPlanning(p)) + "\n");
        if (p.chosen < 0) process.exitCode = 1;
      } catch (e) {
        fail(e);
      }
    });

  addRunsCommands(program, fail);

  program
    .command("report <run>")
    .description("write the standard figures of a run (html, svg, png, pdf) and an index.html")
    .option("--out <dir>", "output directory (default <run>/figures)")
    .option("--formats <list>", "comma-separated formats", "html,png")
    .addOption(
      new Option("--style <name>", "figure style: notebook, or paper (3.5 in figures, 300 dpi PNG)")
        .choices(["notebook", "paper"])
        .default("notebook"),
    )
    .addOption(new Option("--columns <n>", "paper style: 1 (3.5 in) or 2 (7 in) columns").choices(["1", "2"]))
    .action(
      async (run: string, flags: { out?: string; formats: string; style: "notebook" | "paper"; columns?: string }) => {
        try {
          const { writeReport } = await import("./reportCommand.js");
          const { makeFileProgress } = await import("./progress.js");
          const formats = flags.formats.split(",");
          const progress = makeFileProgress(
            "report",
            formats.some((f) => f !== "html") ? "starting the headless browser…" : undefined,
          );
          const files = await writeReport(run, {
            outDir: flags.out,
            formats,
            style: flags.style,
            ...(flags.columns ? { columns: Number(flags.columns) as 1 | 2 } : {}),
            onProgress: (done, total, path) => progress.update(done, total, path),
          });
          progress.stop();
          if (progress.bar) for (const f of files) process.stdout.write(f + "\n");
        } catch (e) {
          fail(e);
        }
      },
    );

  program
    .command("repair <run>")
    .description(
      "rebuild a run whose stream is damaged from its intact prefix and its checkpoints (originals kept in <run>/repair-<time>/)",
    )
    .option("--json", "print the repair report as JSON")
    .action(async (run: string, flags: { json?: boolean }) => {
      try {
        const { repairRun, formatRepair } = await import("./repairCommand.js");
        const report = repairRun(run);
        process.stdout.write((flags.json ? JSON.stringify(report) : formatRepair(report)) + "\n");
      } catch (e) {
        fail(e);
      }
    });

  addExportCommand(program, fail);
  addSweepCommand(program, fail);
  addBoardCommand(program, fail);

  // Commands of other packages (the kernel's `kernel install`), added by bin/primal.js so
  // that the library never imports the kernel.
  for (const add of extraCommands) add(program);

  const data = program.command("data").description("datasets");
  data
    .command("fetch <name>")
    .description("download a dataset (wikitext-2) and verify its checksum")
    .option("--dir <dir>", "destination directory (default: the data cache)")
    .action(async (name: string, flags: { dir?: string }) => {
      try {
        const { fetchDataset } = await import("../data/fetch.js");
        const out = await fetchDataset(name as "wikitext-2", flags.dir);
        process.stdout.write(`${JSON.stringify(out)}\n`);
      } catch (e) {
        fail(e);
      }
    });

  await program.parseAsync(argv);
}
