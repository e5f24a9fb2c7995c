// Cell source adjustments around tslab's converter.
//
// Type errors as warnings. tslab type-checks every cell and refuses to run it on any
// diagnostic; in a research notebook a wrong type annotation should not stop an experiment.
// When all of a cell's diagnostics are semantic (TSxxxx >= 2000, i.e. type errors, not syntax)
// the cell is converted again with `// @ts-ignore` above each offending line, the errors are
// printed as warnings, and the cell runs. Syntax errors still block. PRIMAL_STRICT_TYPES=1
// restores tslab's behaviour.

/** A diagnostic as tslab's converter reports it (line numbers are 0-based, cell-relative). */
export interface CellDiagnostic {
  start: { offset: number; line: number; character: number };
  end?: { offset: number; line: number; character: number };
  messageText: string;
  category?: number;
  code: number;
  fileName?: string;
}

export interface ConvertResult {
  output?: string;
  declOutput?: string;
  diagnostics: CellDiagnostic[];
  hasToplevelAwait?: boolean;
  sideOutputs?: { path: string; data: string }[];
  lastExpressionVar?: string;
}

/** tslab's converter (the subset used here). */
export interface Converter {
  convert(prevDecl: string, src: string): ConvertResult;
  inspect(prevDecl: string, src: string, position: number): unknown;
  complete(prevDecl: string, src: string, position: number): unknown;
  addModule(name: string, content: string, meta?: unknown): CellDiagnostic[];
  close(): void;
}

/** The slice of the TypeScript API used to inspect cell sources (tslab's own copy at runtime). */
export interface TsApi {
  createSourceFile(name: string, text: string, target: number, setParents?: boolean, kind?: number): TsNode;
  ScriptTarget: { Latest: number };
  ScriptKind: { TS: number };
  SyntaxKind: Record<string, number>;
  forEachChild(node: TsNode, cb: (child: TsNode) => unknown): unknown;
  isFunctionLike(node: TsNode): boolean;
  isClassLike(node: TsNode): boolean;
}

export interface TsNode {
  kind: number;
  pos: number;
  end: number;
  awaitModifier?: unknown;
  getStart(): number;
}

/** True when the source has an `await` (or `for await`) outside any function or class. */
export function hasTopLevelAwait(ts: TsApi, src: string): boolean {
  const sf = ts.createSourceFile("cell.ts", src, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const K = ts.SyntaxKind;
  let found = false;
  const visit = (node: TsNode): void => {
    if (found) return;
    if (ts.isFunctionLike(node) || ts.isClassLike(node)) return;
    if (node.kind === K.AwaitExpression || (node.kind === K.ForOfStatement && node.awaitModifier)) {
      found = true;
      return;
    }
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(sf, visit);
  return found;
}

/**
 * `{ name }` object shorthands spelled out as `{ name: name }`. tslab turns names declared in
 * earlier cells into `exports.name`, but not inside a shorthand property, so `{ layer }`
 * throws "layer is not defined" when `layer` comes from another cell. Returns `src` itself
 * when there is nothing to change. Same number of lines, so line numbers stay valid.
 */
export function expandShorthands(ts: TsApi, src: string): string {
  if (!src.includes("{")) return src;
  const sf = ts.createSourceFile("cell.ts", src, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const K = ts.SyntaxKind;
  const inserts: { at: number; text: string }[] = [];
  const visit = (node: TsNode): void => {
    const n = node as TsNode & { name?: TsNode & { text?: string }; objectAssignmentInitializer?: unknown };
    // `{ a = 1 } = obj` (a default in a destructuring assignment) cannot be spelled out.
    if (n.kind === K.ShorthandPropertyAssignment && n.name?.text && n.objectAssignmentInitializer === undefined) {
      inserts.push({ at: n.name.end, text: `: ${n.name.text}` });
    }
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(sf, visit);
  if (inserts.length === 0) return src;
  let out = src;
  for (const { at, text } of inserts.sort((a, b) => b.at - a.at)) out = out.slice(0, at) + text + out.slice(at);
  return out;
}

/** A converter that spells out object shorthands before tslab converts a cell (see expandShorthands). */
export function withExpandedShorthands(conv: Converter, ts: TsApi): Converter {
  return {
    inspect: (prev, src, pos) => conv.inspect(prev, src, pos),
    complete: (prev, src, pos) => conv.complete(prev, src, pos),
    addModule: (name, content, meta) => conv.addModule(name, content, meta),
    close: () => conv.close(),
    convert: (prev, src) => conv.convert(prev, expandShorthands(ts, src)),
  };
}

/** Offsets at which each line of `src` starts. */
function lineStarts(src: string): number[] {
  const starts = [0];
  for (let i = 0; i < src.length; i++) if (src.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

/**
 * `src` with a `// @ts-ignore` line inserted above each of `lines` (0-based), or null when a
 * line starts inside a multi-line string or template literal (a comment there would change
 * the string).
 */
export function insertTsIgnore(ts: TsApi, src: string, lines: Iterable<number>): string | null {
  const starts = lineStarts(src);
  const wanted = [...new Set(lines)].filter((l) => l >= 0 && l < starts.length).sort((a, b) => a - b);
  if (wanted.length === 0) return null;
  const sf = ts.createSourceFile("cell.ts", src, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const K = ts.SyntaxKind;
  const literalKinds = new Set([
    K.StringLiteral,
    K.NoSubstitutionTemplateLiteral,
    K.TemplateHead,
    K.TemplateMiddle,
    K.TemplateTail,
    K.RegularExpressionLiteral,
    K.JsxText,
  ]);
  const literals: [number, number][] = [];
  const visit = (node: TsNode): void => {
    if (literalKinds.has(node.kind)) literals.push([node.getStart(), node.end]);
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(sf, visit);
  for (const l of wanted) {
    const at = starts[l] as number;
    if (literals.some(([a, b]) => a < at && at < b)) return null;
  }
  let out = src;
  for (const l of wanted.reverse()) {
    const at = starts[l] as number;
    // Same indentation as the line, so the comment reads naturally in tracebacks.
    const indent = /^[ \t]*/.exec(src.slice(at))?.[0] ?? "";
    out = `${out.slice(0, at)}${indent}// @ts-ignore\n${out.slice(at)}`;
  }
  return out;
}

function formatDiagnostic(d: CellDiagnostic): string {
  return `${d.fileName ? `${d.fileName} ` : ""}${d.start.line + 1}:${d.start.character + 1} - ${d.messageText} (TS${d.code})`;
}

export interface SoftenOptions {
  /** Where warnings go; default process.stderr (the cell's stderr inside the kernel). */
  warn?: (text: string) => void;
}

/**
 * A converter whose `convert` turns type errors of the cell into printed warnings and still
 * produces runnable output. Diagnostics in other files, syntax errors, or a cell where a
 * comment cannot be inserted safely keep tslab's behaviour (the cell does not run).
 */
export function softenTypeErrors(conv: Converter, ts: TsApi, opts: SoftenOptions = {}): Converter {
  const warn = opts.warn ?? ((text: string) => void process.stderr.write(text));
  let explained = false;
  return {
    inspect: (prev, src, pos) => conv.inspect(prev, src, pos),
    complete: (prev, src, pos) => conv.complete(prev, src, pos),
    addModule: (name, content, meta) => conv.addModule(name, content, meta),
    close: () => conv.close(),
    convert(prevDecl: string, src: string): ConvertResult {
      const first = conv.convert(prevDecl, src);
      const diags = first.diagnostics;
      if (diags.length === 0) return first;
      if (!diags.every((d) => d.fileName === undefined && d.code >= 2000)) return first;
      const patched = insertTsIgnore(
        ts,
        src,
        diags.map((d) => d.start.line),
      );
      if (patched === null) return first;
      const second = conv.convert(prevDecl, patched);
      if (second.diagnostics.length > 0 || second.output === undefined) return first;
      // The inserted ts-ignore comments also hide "await is only allowed in async functions", which is how tslab
      // detects top-level await; detect it from the source instead.
      if (!second.hasToplevelAwait && hasTopLevelAwait(ts, src)) second.hasToplevelAwait = true;
      const seen = new Set<string>();
      const lines: string[] = [];
      for (const d of diags) {
        const text = formatDiagnostic(d);
        if (!seen.has(text)) {
          seen.add(text);
          lines.push(`type warning ${text}`);
        }
      }
      if (!explained) {
        lines.push(
          "(type errors do not stop a cell in the PRIMAL kernel; set PRIMAL_STRICT_TYPES=1 to make them errors)",
        );
        explained = true;
      }
      warn(lines.join("\n") + "\n");
      return second;
    },
  };
}
