#!/usr/bin/env bash
# One-shot GPU check: builds the core with CUDA, runs the CUDA parity tests and the trainer
# tests, then benchmarks ghost-0.1b (poltergeist, ste, fp, and poltergeist with PRIMAL_GEMM=bf16)
# beside PyTorch (eager and torch.compile, bf16 autocast, BitNet STE) on the same GPU. Needs no Node.
# Results go to $OUT (or ./gpu-results): env.txt, build.log, tests.log, tests-bf16.log,
# tests-ops.log, bench.jsonl, summary.txt.
set -u
OUT=${OUT:-$(pwd)/gpu-results}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${BUILD_DIR:-/tmp/primal-gpu-build}
STEPS=${STEPS:-20}
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }

{
  echo "## machine"; nvidia-smi || true
  echo "## tools"; which node nvcc cmake python3 || true; nvcc --version | tail -2 || true; cmake --version | head -1
  echo "## cublas"; ls /usr/local/cuda/include/cublasLt.h /usr/local/cuda/lib64/libcublasLt* 2>&1 | head
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" 2>&1
} > "$OUT/env.txt" 2>&1
log "env written"

CUBLAS_ARG=""
if [ ! -f /usr/local/cuda/include/cublasLt.h ]; then
  d=$(python3 -c "import nvidia.cublas, os; print(list(nvidia.cublas.__path__)[0])" 2>/dev/null)
  [ -n "$d" ] && CUBLAS_ARG="-DPRIMAL_CUBLAS_DIR=$d" && log "cuBLAS from wheel: $d"
  [ -n "$d" ] && export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"
fi

log "configure + build"
if cmake -S "$ROOT/native" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 $CUBLAS_ARG > "$OUT/build.log" 2>&1 \
   && cmake --build "$BUILD" -j16 --target primal_core_test primal_bench >> "$OUT/build.log" 2>&1; then
  log "build ok"
else
  log "BUILD FAILED"; tail -60 "$OUT/build.log"; exit 1
fi
grep -q "CUDA backend enabled" "$OUT/build.log" && log "CUDA backend enabled" || log "WARNING: CUDA backend NOT enabled"

log "tests: cuda/trainer (whole-trainer parity), then cuda/ ops"
timeout ${TEST_TIMEOUT:-90} "$BUILD/primal_core_test" cuda/trainer > "$OUT/tests.log" 2>&1; log "cuda trainer tests exit $? : $(tail -1 "$OUT/tests.log")"
grep -E "FAIL|     " "$OUT/tests.log" | head -40
timeout 180 "$BUILD/primal_core_test" "cuda/attention" > "$OUT/tests-attn.log" 2>&1; log "cuda attention tests (simt + tc) exit $? : $(tail -1 "$OUT/tests-attn.log")"
grep -E "FAIL|     " "$OUT/tests-attn.log" | head -20

log "bench"
: > "$OUT/bench.jsonl"
for q in poltergeist ste fp; do
  timeout ${BENCH_TIMEOUT:-60} "$BUILD/primal_bench" --device cuda --preset ghost-0.1b --quant $q --batch ${BATCH:-8} --steps $STEPS --warmup 2 >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
  log "primal $q: $(tail -1 "$OUT/bench.jsonl")"
done
# Opt-in bf16 GEMMs (bf16 operands, fp32 accumulation; see native/src/cuda/README.md).
PRIMAL_GEMM=bf16 timeout ${BENCH_TIMEOUT:-60} "$BUILD/primal_bench" --device cuda --preset ghost-0.1b --quant poltergeist --batch ${BATCH:-8} --steps $STEPS --warmup 2 >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
log "primal poltergeist PRIMAL_GEMM=bf16: $(tail -1 "$OUT/bench.jsonl")"
# Opt-in tensor-core attention (bf16 WMMA, fp32 accumulation; see native/src/cuda/README.md).
PRIMAL_CUDA_ATTN=tc timeout ${BENCH_TIMEOUT:-60} "$BUILD/primal_bench" --device cuda --preset ghost-0.1b --quant poltergeist --batch ${BATCH:-8} --steps $STEPS --warmup 2 >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
log "primal poltergeist PRIMAL_CUDA_ATTN=tc: $(tail -1 "$OUT/bench.jsonl")"
PRIMAL_CUDA_ATTN=tc PRIMAL_GEMM=bf16 timeout ${BENCH_TIMEOUT:-60} "$BUILD/primal_bench" --device cuda --preset ghost-0.1b --quant poltergeist --batch ${BATCH:-8} --steps $STEPS --warmup 2 >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
log "primal poltergeist PRIMAL_CUDA_ATTN=tc PRIMAL_GEMM=bf16: $(tail -1 "$OUT/bench.jsonl")"
PRIMAL_CUDA_ATTN=tc timeout 60 "$BUILD/primal_core_test" "cuda/bf16 trainer" > "$OUT/tests-attn-trainer.log" 2>&1; log "bf16 trainer with tc attention exit $? : $(tail -1 "$OUT/tests-attn-trainer.log")"
# Memory plans: the cost of block recompute at batch 8, and batch 32 under a 10 GiB budget.
timeout ${BENCH_TIMEOUT:-60} "$BUILD/primal_bench" --device cuda --preset ghost-0.1b --quant poltergeist --batch ${BATCH:-8} --recompute block --steps $STEPS --warmup 2 >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
log "primal poltergeist recompute=block: $(tail -1 "$OUT/bench.jsonl")"
timeout ${BENCH_TIMEOUT:-60} "$BUILD/primal_bench" --device cuda --preset ghost-0.1b --quant poltergeist --batch 32 --memory-budget-gib 10 --steps $STEPS --warmup 2 >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
log "primal poltergeist batch 32, budget 10 GiB: $(tail -1 "$OUT/bench.jsonl")"
timeout 60 "$BUILD/primal_core_test" cuda/bf16 > "$OUT/tests-bf16.log" 2>&1; log "cuda bf16 tests exit $? : $(tail -1 "$OUT/tests-bf16.log")"
grep -E "FAIL|     " "$OUT/tests-bf16.log" | head -20
timeout 60 "$BUILD/primal_core_test" cuda/ > "$OUT/tests-ops.log" 2>&1; log "all cuda tests exit $? : $(tail -1 "$OUT/tests-ops.log")"
PEER="$ROOT/test/bench/peer/torch_peer.py"
if [ "${PEER_QUICK:-0}" = 1 ]; then set -- "--quant ste --bf16"; else set -- "--quant ste --bf16" "--quant ste --bf16 --compile" "--quant fp --bf16 --compile"; fi
for args in "$@"; do
  timeout ${PEER_TIMEOUT:-200} python3 "$PEER" --device cuda --preset ghost-0.1b --batch ${BATCH:-8} --steps $STEPS --warmup 3 $args > "$OUT/peer.tmp" 2>> "$OUT/bench.err"
  tail -1 "$OUT/peer.tmp" >> "$OUT/bench.jsonl"
  log "pytorch $args: $(tail -1 "$OUT/peer.tmp")"
done
log "done"
