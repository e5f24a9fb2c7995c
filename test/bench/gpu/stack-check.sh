#!/usr/bin/env bash
# The device check's "stack" stage: unpacks the Node binary and the compiled package carried in
# .gpu-pack (pack-node.sh), builds the N-API addon with CUDA by a plain CMake configure of
# native/ with the N-API headers (no cmake-js there; the core objects of the build stage are
# reused), then runs test/gpu/stack-check.mjs and notebook 01 as a script with device "cuda".
# Run by device-check.sh (STAGE_DIR, BUILD, PACK, ROOT, WORK and add_merge come from there).
# SETUP_ONLY=1 stops once Node and the addon are ready (the seed stage uses that); a setup
# already done in this tree (a warm machine) is reused.
set -u
NODE_DIR="$ROOT/build/gpu-node/bin"
mkdir -p "$NODE_DIR"
if [ ! -x "$NODE_DIR/node" ]; then
  xz -dc "$PACK/node.xz" > "$NODE_DIR/node.tmp" && chmod +x "$NODE_DIR/node.tmp" && mv "$NODE_DIR/node.tmp" "$NODE_DIR/node" \
    || { echo "cannot unpack node"; exit 1; }
fi
export PATH="$NODE_DIR:$PATH"
echo "node $(node --version)"
# dist/, package.json and node_modules into the repository root (all git-ignored, so absent from
# the tree that travelled): the package layout native.ts and paths.ts expect.
tar -C "$ROOT" -xJf "$PACK/stack.tar.xz" || { echo "cannot unpack the stack"; exit 1; }

d=""
[ -f /usr/local/cuda/include/cublasLt.h ] || d=$(python3 -c "import nvidia.cublas; print(list(nvidia.cublas.__path__)[0])" 2>/dev/null)
cub=()
if [ -n "$d" ]; then cub=("-DPRIMAL_CUBLAS_DIR=$d"); export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"; fi
# CMAKE_JS_VERSION turns on the addon target of native/CMakeLists.txt; node-api-headers holds
# node_api.h, and node-addon-api is found through node as under cmake-js.
if cmake -S "$ROOT/native" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 "${cub[@]}" \
     -DCMAKE_JS_VERSION=pack -DCMAKE_JS_INC="$ROOT/node_modules/node-api-headers/include" -DCMAKE_JS_SRC= -DCMAKE_JS_LIB= \
     > "$STAGE_DIR/addon-build.log" 2>&1 \
   && cmake --build "$BUILD" --target primal_native -j"$(nproc)" >> "$STAGE_DIR/addon-build.log" 2>&1; then
  mkdir -p "$ROOT/build/Release"
  cp "$(find "$BUILD" -name primal_native.node | head -1)" "$ROOT/build/Release/primal_native.node"
  addon=ok
else
  addon=failed
fi
add_merge --set "addonBuild=\"$addon\""
add_merge --log "$STAGE_DIR/addon-build.log"
[ $addon = ok ] || exit 1
[ "${SETUP_ONLY:-0}" = 1 ] && exit 0

# The packed GPT-2 caches, copied: caches the checks build (byte-level) stay out of the pack.
mkdir -p "$WORK/cache"
cp -r "$PACK/cache/." "$WORK/cache/" 2>/dev/null
export PRIMAL_CACHE_DIR="$WORK/cache"
[ -d "$PACK/wikitext-2" ] && export PRIMAL_WIKITEXT_DIR="$PACK/wikitext-2"
rc=0
left=$(( STAGE_END - $(date +%s) - 5 ))
( cd "$ROOT" && timeout -k 3 $(( left * 2 / 3 )) node test/gpu/stack-check.mjs ) > "$STAGE_DIR/stack.jsonl" 2> "$STAGE_DIR/stack.err" || rc=1
add_merge --jsonl "$STAGE_DIR/stack.jsonl"
add_merge --log "$STAGE_DIR/stack.err"
left=$(( STAGE_END - $(date +%s) - 3 ))
# Notebook 01 runs in a scratch folder (its run directory goes there).
mkdir -p "$WORK/notebook"
( cd "$WORK/notebook" && timeout -k 3 "$left" node "$ROOT/test/gpu/run-notebook.mjs" "$ROOT/notebooks/01-quickstart.ipynb" "${STACK_DEVICE:-cuda}" ) \
  > "$STAGE_DIR/notebook01.jsonl" 2> "$STAGE_DIR/notebook01.err" || rc=1
add_merge --jsonl "$STAGE_DIR/notebook01.jsonl"
add_merge --log "$STAGE_DIR/notebook01.err"
exit $rc
