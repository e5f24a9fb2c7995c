#!/usr/bin/env bash
# Distributed section of the GPU device check (docs/distributed.md), prepared to be appended to
# device-check.sh or run after it on the same machine. Needs no Node. Builds the core with CUDA and
# the communicators it can find, then runs primal_dist_check as ONE rank: the same ghost-0.1b
# training (random tokens, batch 8 x 1024) alone and through a one-rank communicator must give
# bit-identical losses, codes and votes; the JSON line carries both step times (the cost of the
# all-reduce path: one batched all-reduce of ~240 MB per step, plus merging the votes).
#   NCCL: from /usr (libnccl-dev), $NCCL_HOME, or the nvidia-nccl-cu12 wheel next to python3.
#   MPI:  needed by both (it starts the ranks and carries NCCL's id); without it this section is
#         skipped with the reason. Nothing is downloaded.
# Results: $OUT/dist-build.log, dist.jsonl, dist.err, and lines in summary.txt. ~2-4 min on an H200
# (build ~1-2 min; each run 2 x STEPS steps at ~70 ms plus model setup).
set -u
OUT=${OUT:-$(pwd)/gpu-results}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${DIST_BUILD_DIR:-/tmp/primal-gpu-dist-build}
STEPS=${DIST_STEPS:-10}
log() { echo "[$(date +%H:%M:%S)] dist: $*" | tee -a "$OUT/summary.txt"; }

if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
  log "SKIPPED: no MPI on this machine (mpirun/mpicc; Debian: libopenmpi-dev openmpi-bin)"
  exit 0
fi

ARGS=()
if [ ! -f /usr/include/nccl.h ] && [ -z "${NCCL_HOME:-}" ]; then
  d=$(python3 -c "import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])" 2>/dev/null)
  [ -n "$d" ] && export NCCL_HOME="$d" && export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" && log "NCCL from wheel: $d"
fi
[ -n "${NCCL_HOME:-}" ] && ARGS+=("-DNCCL_HOME=$NCCL_HOME")
if [ ! -f /usr/local/cuda/include/cublasLt.h ]; then
  d=$(python3 -c "import nvidia.cublas, os; print(list(nvidia.cublas.__path__)[0])" 2>/dev/null)
  [ -n "$d" ] && ARGS+=("-DPRIMAL_CUBLAS_DIR=$d") && export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"
fi

log "configure + build (primal_dist_check)"
if cmake -S "$ROOT/native" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DPRIMAL_TESTS=OFF "${ARGS[@]}" \
     > "$OUT/dist-build.log" 2>&1 \
   && cmake --build "$BUILD" -j16 --target primal_dist_check >> "$OUT/dist-build.log" 2>&1; then
  log "build ok; $(grep -E 'primal: (MPI|NCCL|CUDA)' "$OUT/dist-build.log" | tr '\n' ';')"
else
  log "BUILD FAILED"; tail -40 "$OUT/dist-build.log"; exit 1
fi

MPIRUN=(mpirun -n 1 --allow-run-as-root)
: > "$OUT/dist.jsonl"
if grep -q "NCCL communicator enabled" "$OUT/dist-build.log"; then
  timeout ${DIST_TIMEOUT:-240} "${MPIRUN[@]}" "$BUILD/primal_dist_check" --comm nccl --device cuda --preset ghost-0.1b \
    --batch 8 --steps "$STEPS" >> "$OUT/dist.jsonl" 2>> "$OUT/dist.err"
  log "nccl, 1 rank vs plain (exit $? ; 0 = identical): $(tail -1 "$OUT/dist.jsonl")"
else
  log "nccl SKIPPED: CMake found no NCCL (see dist-build.log)"
fi
# MPI on the CUDA backend stages the buffers through the host: the price of not having NCCL.
timeout ${DIST_TIMEOUT:-240} "${MPIRUN[@]}" "$BUILD/primal_dist_check" --comm mpi --device cuda --preset ghost-0.1b \
  --batch 8 --steps "$STEPS" >> "$OUT/dist.jsonl" 2>> "$OUT/dist.err"
log "mpi (host-staged), 1 rank vs plain (exit $? ; 0 = identical): $(tail -1 "$OUT/dist.jsonl")"
tail -5 "$OUT/dist.err" 2>/dev/null
