// The dashboard: `primal board` in a terminal, `await board()` in a notebook cell (an inline
// frame showing the same pages, served from the kernel's process).
import { withDisplay } from "../display/mime.js";
import { escapeHtml } from "../plots/html.js";
import { resolveHome } from "../tracking/runStore.js";
// The server (hono, chokidar) loads on the first board() call, not with the library.
import type { BoardOptions, BoardServer } from "./server.js";

export type { BoardOptions, BoardServer } from "./server.js";

export interface EmbedOptions extends BoardOptions {
  /** Height of the inline frame in pixels (default 720). */
  height?: number;
  /** Open this page: a run id ("run/<id>") or a sweep ("sweep/<id>"); default the runs table. */
  page?: string;
}

/** A running board shown in a notebook cell: an inline frame plus a link (for another tab). */
export interface BoardEmbed extends BoardServer {
  /** The page URL this embed shows. */
  pageUrl: string;
}

/** Boards started by board() in this process, one per home, reused by later calls. */
const running = new Map<string, Promise<BoardServer>>();

/**
 * Starts (or reuses) a dashboard over the run home on this machine (127.0.0.1, a free port unless
 * `port` is given) and returns it; in a notebook it displays as the board in an inline frame.
 * The frame needs the browser to reach the kernel's machine at 127.0.0.1: from a remote
 * notebook, forward the port or run `primal board` there.
 */
export async function board(opts: EmbedOptions = {}): Promise<BoardEmbed> {
  const home = resolveHome(opts.home);
  let started = running.get(home);
  if (!started) {
    started = import("./server.js").then((m) => m.startBoard({ ...opts, home, port: opts.port ?? 0 }));
    running.set(home, started);
    started.catch(() => running.delete(home));
  }
  const server = await started;
  const page = opts.page ? `#/${opts.page.replace(/^#?\/?/, "")}` : "";
  const pageUrl = `${server.url}?embed=1${page}`;
  const height = opts.height ?? 720;
  const embed: BoardEmbed = {
    ...server,
    pageUrl,
    close: async () => {
      running.delete(home);
      await server.close();
    },
  };
  return withDisplay(embed, () => ({
    "text/html":
      `<div class="primal-board"><iframe src="${escapeHtml(pageUrl)}" style="width:100%;height:${height}px;border:1px solid #ddd" loading="lazy"></iframe>` +
      `<div style="font-size:12px;color:#666">PRIMAL board over ${escapeHtml(home)}: <a href="${escapeHtml(server.url)}" target="_blank">${escapeHtml(server.url)}</a> (open in a tab)</div></div>`,
    "text/plain": `PRIMAL board: ${server.url} (runs in ${home})`,
  }));
}
