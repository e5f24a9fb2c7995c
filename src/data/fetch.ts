/**
 * Downloading public datasets (only WikiText-2 for now) with Node's built-in fetch.
 *
 * Files are verified against pinned sha256 digests and written atomically (temp file in the
 * destination directory, then rename), so an interrupted or corrupted download never leaves a
 * file that later looks valid. Files already present with the right digest are not downloaded
 * again. Nothing here runs implicitly: training never touches the network by itself.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { defaultCacheDir } from "./paths.js";
import { WIKITEXT_DIR_ENV } from "./wikitext.js";

/**
 * Mirror of the tokenized WikiText-2 (v1) release: the copy in the public pytorch/examples
 * repository (word_language_model/data/wikitext-2): valid.txt and test.txt, checked by sha256.
 */
export const WIKITEXT2_BASE_URL =
  "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/";

export interface DatasetFile {
  readonly name: string;
  readonly sha256: string;
  readonly bytes: number;
}

export interface DatasetSpec {
  readonly baseUrl: string;
  readonly files: readonly DatasetFile[];
  readonly license: string;
}

export const DATASETS = {
  "wikitext-2": {
    baseUrl: WIKITEXT2_BASE_URL,
    files: [
      {
        name: "valid.txt",
        sha256: "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
        bytes: 1121681,
      },
      {
        name: "test.txt",
        sha256: "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        bytes: 1256449,
      },
    ],
    license: "CC BY-SA 3.0 (Merity et al., Pointer Sentinel Mixture Models, 2016)",
  },
} as const satisfies Record<string, DatasetSpec>;

export type DatasetName = keyof typeof DATASETS;

export interface FetchOptions {
  /** Replaces the dataset's mirror (a URL ending in "/"); used by tests and for other mirrors. */
  baseUrl?: string;
  /** Per-file limit for connecting and reading the body; default 120 s. */
  timeoutMs?: number;
  /** Progress messages ("downloading ...", "ok ..."); silent by default. */
  log?: (message: string) => void;
}

export interface FetchedFile {
  name: string;
  path: string;
  sha256: string;
  bytes: number;
  /** false when a verified copy was already there. */
  downloaded: boolean;
}

export interface FetchResult {
  dataset: DatasetName;
  dir: string;
  files: FetchedFile[];
}

function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function describeFailure(err: unknown, timeoutMs: number): string {
  if (err instanceof Error) {
    if (err.name === "TimeoutError" || err.name === "AbortError") {
      return `no answer within ${timeoutMs} ms`;
    }
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      return `${err.message} (${typeof code === "string" ? `${code}: ` : ""}${cause.message})`;
    }
    return err.message;
  }
  return String(err);
}

/**
 * Downloads a dataset into `destDir` (default `<cache dir>/<name>`, where loadWikiText looks
 * when no directory is configured) and returns the verified files.
 */
export async function fetchDataset(
  name: DatasetName,
  destDir?: string,
  options: FetchOptions = {},
): Promise<FetchResult> {
  const spec: DatasetSpec | undefined = DATASETS[name];
  if (spec === undefined) {
    throw new Error(`unknown dataset ${JSON.stringify(name)}; known: ${Object.keys(DATASETS).join(", ")}`);
  }
  const dir = resolve(destDir ?? join(defaultCacheDir(), name));
  const baseUrl = options.baseUrl ?? spec.baseUrl;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const log = options.log ?? (() => {});
  mkdirSync(dir, { recursive: true });

  const files: FetchedFile[] = [];
  for (const file of spec.files) {
    const path = join(dir, file.name);
    if (existsSync(path) && sha256Hex(readFileSync(path)) === file.sha256) {
      files.push({ name: file.name, path, sha256: file.sha256, bytes: file.bytes, downloaded: false });
      continue;
    }
    const url = new URL(file.name, baseUrl).toString();
    log(`downloading ${url}`);
    let body: Uint8Array;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
      body = new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      throw new Error(
        `could not download ${name} file ${file.name} from ${url}: ${describeFailure(err, timeoutMs)}. ` +
          `If this machine is offline, copy ${spec.files.map((f) => f.name).join(" and ")} ` +
          `(from ${spec.baseUrl}) into a directory by other means and set ${WIKITEXT_DIR_ENV} to it.`,
        { cause: err },
      );
    }
    const digest = sha256Hex(body);
    if (digest !== file.sha256) {
      throw new Error(
        `checksum mismatch for ${file.name} from ${url}: expected sha256 ${file.sha256}, ` +
          `got ${digest} (${body.length} bytes). The download was discarded; the mirror may have ` +
          `changed or the transfer was corrupted.`,
      );
    }
    const tmp = join(dir, `.${file.name}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
    try {
      writeFileSync(tmp, body);
      renameSync(tmp, path);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    log(`ok ${path} (${body.length} bytes, sha256 verified)`);
    files.push({ name: file.name, path, sha256: digest, bytes: body.length, downloaded: true });
  }
  return { dataset: name, dir, files };
}
