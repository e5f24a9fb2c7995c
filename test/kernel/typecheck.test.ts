// Type errors as warnings, and the virtual `primal` package for tslab's TypeScript.
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { describe, expect, it } from "vitest";
import { dependencyDirs, mountVirtualModules, virtualModules, type FileSystemHost } from "../../kernel/modules.js";
import {
  expandShorthands,
  hasTopLevelAwait,
  insertTsIgnore,
  softenTypeErrors,
  type Converter,
  type ConvertResult,
  type TsApi,
} from "../../kernel/typecheck.js";

const require = createRequire(import.meta.url);
const tslabMain = require.resolve("tslab");
// The TypeScript that tslab ships (5.0), as the kernel uses it.
const ts = createRequire(tslabMain)("@tslab/typescript-for-tslab") as TsApi;
const { createConverter } = require(`${dirname(tslabMain)}/converter.js`) as {
  createConverter(o: { isJS: boolean; isBrowser: boolean }): Converter;
};

describe("hasTopLevelAwait", () => {
  it("finds awaits outside functions only", () => {
    expect(hasTopLevelAwait(ts, "const a = await f();")).toBe(true);
    expect(hasTopLevelAwait(ts, "if (x) { for await (const y of g()) {} }")).toBe(true);
    expect(hasTopLevelAwait(ts, "async function f() { await g(); }")).toBe(false);
    expect(hasTopLevelAwait(ts, "const f = async () => await g();")).toBe(false);
    expect(hasTopLevelAwait(ts, "class A { async m() { await 1; } }")).toBe(false);
    expect(hasTopLevelAwait(ts, "const s = 'await x';")).toBe(false);
  });
});

describe("expandShorthands", () => {
  it("spells out object shorthands, keeping lines", () => {
    expect(expandShorthands(ts, "f({ layer, n: 2 });\nconst o = { a, b };")).toBe(
      "f({ layer: layer, n: 2 });\nconst o = { a: a, b: b };",
    );
  });

  it("leaves destructuring patterns, defaults and plain code alone", () => {
    for (const src of ["const { a, b } = o;", "({ a = 1 } = o);", "const x = 1;", "const s = '{ a }';"]) {
      expect(expandShorthands(ts, src)).toBe(src);
    }
  });
});

describe("insertTsIgnore", () => {
  it("puts an indented @ts-ignore above each line", () => {
    const src = "const a = 1;\n  const b: number = 'x';\nconst c: string = 2;";
    expect(insertTsIgnore(ts, src, [1, 2, 1])).toBe(
      "const a = 1;\n  // @ts-ignore\n  const b: number = 'x';\n// @ts-ignore\nconst c: string = 2;",
    );
  });

  it("refuses lines inside multi-line template literals", () => {
    const src = "const s = `line one\nline two`;\nconst n: number = s;";
    expect(insertTsIgnore(ts, src, [1])).toBeNull();
    expect(insertTsIgnore(ts, src, [2])).toContain("// @ts-ignore\nconst n");
  });
});

function fakeConverter(results: ((src: string) => ConvertResult)[]): Converter & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    convert(_prev: string, src: string) {
      calls.push(src);
      const r = results[calls.length - 1];
      if (!r) throw new Error("unexpected convert");
      return r(src);
    },
    inspect: () => null,
    complete: () => null,
    addModule: () => [],
    close: () => undefined,
  };
}

const diag = (
  line: number,
  code: number,
  messageText = "Type 'string' is not assignable to type 'number'.",
  fileName?: string,
) => ({
  start: { offset: 0, line, character: 6 },
  messageText,
  code,
  ...(fileName ? { fileName } : {}),
});

describe("softenTypeErrors", () => {
  it("runs the cell with the type errors printed as warnings", () => {
    const conv = fakeConverter([
      () => ({ diagnostics: [diag(0, 2322)] }),
      () => ({ diagnostics: [], output: "js", hasToplevelAwait: false }),
    ]);
    const warnings: string[] = [];
    const soft = softenTypeErrors(conv, ts, { warn: (t) => warnings.push(t) });
    const r = soft.convert("", "const x: number = await f();");
    expect(r.output).toBe("js");
    // The ts-ignore comment hid tslab's top-level-await signal; the source says there is one.
    expect(r.hasToplevelAwait).toBe(true);
    expect(conv.calls[1]).toBe("// @ts-ignore\nconst x: number = await f();");
    expect(warnings.join("")).toContain(
      "type warning 1:7 - Type 'string' is not assignable to type 'number'. (TS2322)",
    );
    expect(warnings.join("")).toContain("PRIMAL_STRICT_TYPES");
  });

  it("keeps syntax errors and errors in other files blocking", () => {
    for (const d of [diag(0, 1005, "';' expected."), diag(0, 2322, "x", "helper.ts")]) {
      const conv = fakeConverter([() => ({ diagnostics: [d] })]);
      const r = softenTypeErrors(conv, ts, { warn: () => undefined }).convert("", "let a = ;");
      expect(r.diagnostics).toHaveLength(1);
      expect(r.output).toBeUndefined();
      expect(conv.calls).toHaveLength(1);
    }
  });

  it("works with tslab's real converter", () => {
    const conv = softenTypeErrors(createConverter({ isJS: false, isBrowser: false }), ts, { warn: () => undefined });
    try {
      // The type error and the only top-level await share a line.
      const ok = conv.convert("", "const b: number = await Promise.resolve('text');\nb");
      expect(ok.diagnostics).toEqual([]);
      expect(ok.hasToplevelAwait).toBe(true);
      expect(ok.output).toContain("Promise.resolve");
      const bad = conv.convert("", "const c = ;");
      expect(bad.diagnostics.length).toBeGreaterThan(0);
    } finally {
      conv.close();
    }
  }, 60_000);
});

describe("virtual node_modules", () => {
  const real = new Set([
    "/deps/node_modules/apache-arrow",
    "/deps/node_modules/@types",
    "/deps/node_modules/@types/node",
    "/home/me/notes/node_modules/zod",
  ]);
  const vm = virtualModules({
    cwd: "/home/me/notes",
    packages: { primal: "/opt/primal" },
    searchDirs: ["/deps/node_modules"],
    files: { "primal/kernel.d.ts": "export * from './dist/kernel/index.js';" },
    exists: (p) => real.has(p),
  });

  it("maps primal onto its root and other packages onto the search dirs", () => {
    expect(vm.map("/home/me/notes/node_modules/primal/package.json")).toBe("/opt/primal/package.json");
    expect(vm.map("/home/me/notes/node_modules/primal")).toBe("/opt/primal");
    expect(vm.map("/home/me/notes/node_modules/apache-arrow/Arrow.node.d.ts")).toBe(
      "/deps/node_modules/apache-arrow/Arrow.node.d.ts",
    );
    expect(vm.map("/home/me/notes/node_modules/@types")).toBe("/deps/node_modules/@types");
    expect(vm.map("/home/me/notes/node_modules/@types/node/index.d.ts")).toBe(
      "/deps/node_modules/@types/node/index.d.ts",
    );
    expect(vm.isVirtual("/home/me/notes/node_modules/missing/index.d.ts")).toBe(false);
    expect(vm.map("/elsewhere/node_modules/primal/package.json")).toBe("/elsewhere/node_modules/primal/package.json");
  });

  it("lets a real package in the notebook directory win", () => {
    expect(vm.isVirtual("/home/me/notes/node_modules/zod/index.d.cts")).toBe(false);
  });

  it("hides the package's nested node_modules so dependencies get portable names", () => {
    expect(vm.map("/home/me/notes/node_modules/primal/node_modules/apache-arrow/package.json")).toContain(
      ".primal-kernel-hidden",
    );
  });

  it("serves synthetic files", () => {
    expect(vm.synthetic("/home/me/notes/node_modules/primal/kernel.d.ts")).toContain("dist/kernel/index.js");
    expect(vm.synthetic("/home/me/notes/node_modules/primal/index.d.ts")).toBeUndefined();
  });

  it("patches a ts.sys-like host in place, realpath included", () => {
    const seen: string[] = [];
    const sys: FileSystemHost = {
      getCurrentDirectory: () => "/nonexistent-notebook-dir",
      fileExists: (p: string) => (seen.push(p), p === "/opt/primal/package.json"),
      readFile: (p: string) => (p === "/opt/primal/package.json" ? "{}" : undefined),
      directoryExists: () => false,
      getDirectories: () => [],
      realpath: (p: string) => `/real${p}`,
    };
    mountVirtualModules(sys, {
      packages: { primal: "/opt/primal" },
      searchDirs: [],
      files: { "primal/kernel.d.ts": "x" },
    });
    expect(sys.fileExists("/nonexistent-notebook-dir/node_modules/primal/package.json")).toBe(true);
    expect(sys.readFile("/nonexistent-notebook-dir/node_modules/primal/package.json")).toBe("{}");
    expect(seen).toEqual(["/opt/primal/package.json"]);
    expect(sys.readFile("/nonexistent-notebook-dir/node_modules/primal/kernel.d.ts")).toBe("x");
    expect(sys.fileExists("/nonexistent-notebook-dir/node_modules/primal/kernel.d.ts")).toBe(true);
    // Virtual packages are not symlinks to TypeScript.
    expect(sys.realpath?.("/nonexistent-notebook-dir/node_modules/primal/package.json")).toBe(
      "/nonexistent-notebook-dir/node_modules/primal/package.json",
    );
    expect(sys.realpath?.("/tmp/x")).toBe("/real/tmp/x");
  });

  it("lists the node_modules directories of a package root and its ancestors", () => {
    const dirs = new Set(["/p/node_modules", "/p/node_modules/primal/node_modules"]);
    expect(dependencyDirs("/p/node_modules/primal", (d) => dirs.has(d))).toEqual([
      "/p/node_modules/primal/node_modules",
      "/p/node_modules",
    ]);
  });
});
