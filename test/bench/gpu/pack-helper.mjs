// Helpers of pack-node.sh (run here, with this machine's Node):
//   node pack-helper.mjs deps ROOT NAME...        the production node_modules folders NAME needs
//                                                 (transitively), one path per line, relative to ROOT
//   node pack-helper.mjs caches ROOT CACHE WIKI   builds the GPT-2 token caches the GPU runs read:
//                                                 the SOTU corpus (train, validation) and WikiText-2
//                                                 valid and test, written under CACHE
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";

const [cmd, root, ...rest] = process.argv.slice(2);

function findPackage(name, fromDir) {
  // Node's resolution: node_modules of the requiring folder, then of each parent.
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const p = join(dir, "node_modules", name);
    if (existsSync(join(p, "package.json"))) return p;
    if (dirname(dir) === dir) return null;
  }
}

if (cmd === "deps") {
  const seen = new Set();
  const queue = rest.map((n) => [n, root]);
  while (queue.length) {
    const [name, from] = queue.shift();
    const dir = findPackage(name, from);
    if (!dir) throw new Error(`pack: package ${name} (needed from ${from}) is not installed`);
    if (seen.has(dir)) continue;
    seen.add(dir);
    const pj = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    for (const dep of Object.keys({ ...(pj.dependencies ?? {}), ...(pj.optionalDependencies ?? {}) })) {
      if (findPackage(dep, dir)) queue.push([dep, dir]);
      else if (!(pj.optionalDependencies ?? {})[dep])
        throw new Error(`pack: ${dep} (dependency of ${pj.name}) is missing`);
    }
  }
  for (const d of [...seen].sort()) console.log(relative(root, d));
} else if (cmd === "caches") {
  const [cacheDir, wikiDir] = rest;
  const dist = (p) => import(pathToFileURL(join(root, "dist", "src", p)).href);
  const { resolveConfig } = await dist("config.js");
  const { loadTrainingData } = await dist("trainingData.js");
  const { loadWikiText } = await dist("data/wikitext.js");
  const { loadOrBuildTokens } = await dist("data/tokenCache.js");
  const config = resolveConfig({ preset: "ghost-0.1b", device: "cpu", data: { cacheDir, wikitextDir: wikiDir } });
  const t0 = Date.now();
  const bundle = await loadTrainingData(config);
  const test = loadOrBuildTokens({
    text: loadWikiText(wikiDir, "test"),
    tokenizer: bundle.tokenizer,
    name: "wikitext-2-test",
    cacheDir,
  });
  console.log(
    JSON.stringify({
      tokenizer: config.data.tokenizer,
      train: bundle.train.length,
      validation: bundle.validation?.tokens.length ?? 0,
      wikitextValid: bundle.wikitext?.tokens.length ?? 0,
      wikitextTest: test.length,
      seconds: (Date.now() - t0) / 1000,
    }),
  );
} else {
  console.error("usage: pack-helper.mjs deps ROOT NAME... | caches ROOT CACHE WIKI");
  process.exit(2);
}
