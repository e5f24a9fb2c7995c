/**
 * WikiText-2 (Merity et al. 2016, CC BY-SA 3.0): the held-out evaluation text.
 *
 * Never bundled or copied into the repository; it is read from a directory chosen at run time:
 * the `dir` argument, else `$PRIMAL_WIKITEXT_DIR`, else `<cache dir>/wikitext-2` (where
 * `fetchDataset("wikitext-2")` puts it by default). Both releases are recognised:
 * - tokenized ("wikitext-2-v1"): `valid.txt`/`test.txt`/`train.txt` (pytorch/examples names) or
 *   `wiki.valid.tokens`, ... (the original zip's names);
 * - raw ("wikitext-2-raw-v1"): `wiki.valid.raw`, `wiki.test.raw`, `wiki.train.raw`.
 * The directory itself and its subdirectories `wikitext-2`, `wikitext-2-v1`, `wikitext-2-raw`,
 * `wikitext-2-raw-v1` (what the zips extract to) are searched. When both releases are present the
 * tokenized one wins unless `variant: "raw"` is asked for, since published WikiText-2
 * perplexities use it.
 */
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { defaultCacheDir } from "./paths.js";
import { readUtf8File } from "./utf8.js";

export const WIKITEXT_DIR_ENV = "PRIMAL_WIKITEXT_DIR";

export type WikiTextSplit = "train" | "valid" | "test";
export type WikiTextVariant = "tokens" | "raw";

export interface WikiTextOptions {
  /** Which release to read; default: tokenized if present, else raw. */
  variant?: WikiTextVariant;
}

export interface WikiTextFile {
  path: string;
  split: WikiTextSplit;
  variant: WikiTextVariant;
}

const SUBDIRS = ["", "wikitext-2", "wikitext-2-v1", "wikitext-2-raw", "wikitext-2-raw-v1"];

function fileNames(split: WikiTextSplit, variant: WikiTextVariant): string[] {
  return variant === "tokens" ? [`${split}.txt`, `wiki.${split}.tokens`] : [`wiki.${split}.raw`];
}

/** The directory to search and where that choice came from (for error messages). */
export function resolveWikiTextDir(dir?: string): { dir: string; from: string } {
  if (dir !== undefined && dir !== "") return { dir: resolve(dir), from: "the directory argument" };
  const env = process.env[WIKITEXT_DIR_ENV];
  if (env !== undefined && env !== "") return { dir: resolve(env), from: `$${WIKITEXT_DIR_ENV}` };
  return { dir: join(defaultCacheDir(), "wikitext-2"), from: "the default location" };
}

const HOW_TO_SET =
  `Point to a directory holding WikiText-2 (valid.txt and test.txt, or wiki.valid.raw ...) by ` +
  `passing it explicitly or setting ${WIKITEXT_DIR_ENV}, or download it with ` +
  `fetchDataset("wikitext-2", dir).`;

/** Finds the file of one split; throws a message listing every path looked at. */
export function findWikiTextFile(
  dir: string | undefined,
  split: WikiTextSplit,
  options: WikiTextOptions = {},
): WikiTextFile {
  const where = resolveWikiTextDir(dir);
  if (!existsSync(where.dir) || !statSync(where.dir).isDirectory()) {
    throw new Error(`WikiText-2 directory not found: ${where.dir} (from ${where.from}). ${HOW_TO_SET}`);
  }
  const variants: WikiTextVariant[] = options.variant ? [options.variant] : ["tokens", "raw"];
  const tried: string[] = [];
  for (const variant of variants) {
    for (const sub of SUBDIRS) {
      for (const name of fileNames(split, variant)) {
        const path = join(where.dir, sub, name);
        tried.push(join(sub, name));
        if (existsSync(path) && statSync(path).isFile()) return { path, split, variant };
      }
    }
  }
  throw new Error(
    `WikiText-2 ${split} split not found in ${where.dir} (from ${where.from}); looked for ` +
      `${tried.join(", ")}. ${HOW_TO_SET}`,
  );
}

/** Text of one WikiText-2 split (default "valid"), exactly as stored (strict UTF-8). */
export function loadWikiText(dir?: string, split: WikiTextSplit = "valid", options: WikiTextOptions = {}): string {
  const file = findWikiTextFile(dir, split, options);
  const text = readUtf8File(file.path);
  if (text.trim().length === 0) throw new Error(`WikiText-2 file is empty: ${file.path}`);
  return text;
}
