// `primal board`: the live dashboard over a run home. Prints its URL on the first line.
import type { Command } from "commander";
import { intFlag } from "./numberFlags.js";

export function addBoardCommand(program: Command, fail: (e: unknown) => never): void {
  program
    .command("board")
    .description("live dashboard of the runs in the browser (read-only; binds 127.0.0.1 unless --host)")
    .option("--home <dir>", "runs directory (default PRIMAL_HOME or ./runs)")
    .option("--port <n>", "port (0 = any free one)", "6006")
    .option("--host <addr>", "address to listen on (0.0.0.0 exposes the runs to the network)", "127.0.0.1")
    .option("--poll", "poll files instead of watching them (network file systems)")
    .action(async (flags: { home?: string; port: string; host: string; poll?: boolean }) => {
      try {
        const { startBoard } = await import("../board/server.js");
        const port = intFlag("port", flags.port, { min: 0, max: 65535 })!;
        const b = await startBoard({
          ...(flags.home !== undefined ? { home: flags.home } : {}),
          port,
          host: flags.host,
          ...(flags.poll ? { poll: true } : {}),
        });
        process.stdout.write(`${b.url}\n`);
        process.stderr.write(`PRIMAL board over ${b.home} (read-only); Ctrl-C to stop\n`);
        const stop = () => {
          void b.close().then(() => process.exit(0));
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      } catch (e) {
        fail(e);
      }
    });
}
