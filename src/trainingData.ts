// Turns a config's data section into token arrays: the training corpus (embedded State of the
// Union addresses or the user's text), its validation split, and WikiText-2 when a directory is
// configured. Tokenization is cached on disk.
import type { TrainerConfig } from "./config.js";
import { getTokenizer, type Tokenizer } from "./data/tokenizer.js";
import { loadSotuCorpus, loadTextCorpus } from "./data/corpus.js";
import { findWikiTextFile, loadWikiText, WIKITEXT_DIR_ENV } from "./data/wikitext.js";
import { loadOrBuildTokens } from "./data/tokenCache.js";

export interface EvalSet {
  name: string;
  tokens: Int32Array;
  /** UTF-8 bytes of the scored tokens (every token after the first), for bits per byte. */
  bytes: number;
}

export interface DataBundle {
  tokenizer: Tokenizer;
  train: Int32Array;
  validation?: EvalSet;
  wikitext?: EvalSet;
  corpusName: string;
}

function evalSet(name: string, tokens: Int32Array, tokenizer: Tokenizer, maxTokens: number): EvalSet {
  const t = maxTokens > 0 && tokens.length > maxTokens ? tokens.subarray(0, maxTokens) : tokens;
  let bytes = 0;
  for (let i = 1; i < t.length; i++) bytes += tokenizer.tokenBytes(t[i]);
  return { name, tokens: t, bytes };
}

/**
 * The WikiText-2 directory to evaluate on: the configured one (an error if it lacks the files),
 * else $PRIMAL_WIKITEXT_DIR, else the default data location when it holds the files, else none.
 */
function wikiTextDir(configured: string | undefined): string | undefined | null {
  if (configured) {
    findWikiTextFile(configured, "valid");
    return configured;
  }
  if (process.env[WIKITEXT_DIR_ENV]) {
    findWikiTextFile(undefined, "valid");
    return undefined;
  }
  try {
    findWikiTextFile(undefined, "valid");
    return undefined;
  } catch {
    return null;
  }
}

export async function loadTrainingData(config: TrainerConfig): Promise<DataBundle> {
  const tokenizer = getTokenizer(config.data.tokenizer);
  const cacheDir = config.data.cacheDir;
  const src = config.data.corpus;
  const corpus = src === "sotu" ? loadSotuCorpus() : loadTextCorpus(src);
  const name = corpus.name;
  const tok = (text: string, part: string) =>
    loadOrBuildTokens({ text, tokenizer, name: `${name}-${part}`, ...(cacheDir ? { cacheDir } : {}) });
  const train = tok(corpus.train, "train");
  if (train.length < config.model.seq + 2)
    throw new Error(
      `data: the training split of '${name}' has ${train.length} tokens; seq ${config.model.seq} needs at least ${config.model.seq + 2}`,
    );
  const bundle: DataBundle = { tokenizer, train, corpusName: name };
  if (corpus.validation.length > 0)
    bundle.validation = evalSet(
      `${name}/validation`,
      tok(corpus.validation, "validation"),
      tokenizer,
      config.eval.maxTokens,
    );
  const wikiDir = wikiTextDir(config.data.wikitextDir);
  if (wikiDir !== null) {
    const text = loadWikiText(wikiDir, "valid");
    bundle.wikitext = evalSet(
      "wikitext-2/valid",
      loadOrBuildTokens({ text, tokenizer, name: "wikitext-2-valid", ...(cacheDir ? { cacheDir } : {}) }),
      tokenizer,
      config.eval.maxTokens,
    );
  }
  return bundle;
}
