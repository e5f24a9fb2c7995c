/** Public API of the data layer: tokenizers, corpora, WikiText-2, downloads, token cache, eval. */
export {
  type Tokenizer,
  type TokenizerName,
  TOKENIZER_NAMES,
  byteTokenizer,
  gpt2Tokenizer,
  getTokenizer,
} from "./tokenizer.js";
export {
  type TextCorpus,
  DOCUMENT_SEPARATOR,
  VALIDATION_EVERY,
  validationIndices,
  loadSotuCorpus,
  loadTextCorpus,
  loadCorpus,
} from "./corpus.js";
export {
  type WikiTextSplit,
  type WikiTextVariant,
  type WikiTextOptions,
  type WikiTextFile,
  WIKITEXT_DIR_ENV,
  resolveWikiTextDir,
  findWikiTextFile,
  loadWikiText,
} from "./wikitext.js";
export {
  type DatasetName,
  type DatasetSpec,
  type DatasetFile,
  type FetchOptions,
  type FetchResult,
  type FetchedFile,
  DATASETS,
  WIKITEXT2_BASE_URL,
  fetchDataset,
} from "./fetch.js";
export {
  type TokenCacheRequest,
  type TokenCacheResult,
  TOKEN_CACHE_MAGIC,
  TOKEN_CACHE_VERSION,
  tokenCachePath,
  loadOrBuildTokens,
  loadOrBuildTokenCache,
} from "./tokenCache.js";
export {
  type EvalWindow,
  type EvalSums,
  type EvalMetrics,
  evalWindows,
  scoredTokens,
  scoredBytes,
  evalMetrics,
} from "./evalMetrics.js";
export { CACHE_DIR_ENV, defaultCacheDir } from "./paths.js";
export { utf8Length, readUtf8File } from "./utf8.js";
