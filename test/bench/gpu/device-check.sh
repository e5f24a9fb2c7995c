#!/usr/bin/env bash
# The GPU device check, in stages under one hard deadline (DEADLINE_S, default 480 s of command
# time, so a rerun fits in a 15-minute lease):
#   env -> build (primal_core_test, primal_bench, the cuBLASLt probe) -> gates (cuda/ core tests,
#   the tensor-core attention ones last in a process of their own)
#   -> throughput (ghost-0.1b rows, one bench process) -> profile (per-op, PRIMAL_CUDA_PROFILE=1)
#   -> probes (cuBLASLt TF32/BF16/INT8/FP8 at the ghost shapes, torch SDPA flash, bandwidth)
#   -> peers (PyTorch eager, then torch.compile while time is left)
#   -> stack (Node + the addon with CUDA + the TypeScript GPU checks, when .gpu-pack travelled)
#   -> seed (only when selected: the ghost-0.1b seed experiment, ghost-seed.mjs; results in
#      $OUT/results/).
# Each stage merges into $OUT/result.json as it ends; a timeout keeps everything before it.
# Without a GPU (or NO_GPU=1) the GPU stages record "skipped: no GPU" and the script still exits 0
# with a valid result.json. Files back in $OUT (the tool returns at most 8): result.json,
# summary.txt, profile.txt, logs.tar.gz.
#   STAGES=env,build,gates  selects stages; STEPS (timed bench steps, default 20); BATCH (8).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
OUT=${OUT:-$ROOT/gpu-results}
mkdir -p "$OUT"
export OUT ROOT HERE
export RESULT="$OUT/result.json"
export WORK=${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/primal-device-check.XXXXXX")}
export MERGE_PY="$HERE/merge_result.py"
# Inside the tree (git-ignored build/): a second command on a warm machine reuses it.
export BUILD=${BUILD_DIR:-$ROOT/build/gpu-check}
export DEADLINE_S=${DEADLINE_S:-480}
export END=$(( $(date +%s) + DEADLINE_S ))
export STAGES=${STAGES:-env,build,gates,throughput,profile,probes,peers,stack,dist}
export STEPS=${STEPS:-20} BATCH=${BATCH:-8}
export PACK=${PACK_DIR:-$ROOT/.gpu-pack}
mkdir -p "$WORK"
: > "$WORK/summary.txt"
source "$HERE/stages.sh"

HAVE_GPU=0
if [ "${NO_GPU:-0}" != 1 ] && command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  HAVE_GPU=1
fi
# FORCE_GPU=1 runs the GPU stages' plumbing on a machine without one (they fail, and say why).
[ "${FORCE_GPU:-0}" = 1 ] && HAVE_GPU=1
export HAVE_GPU
# The tree's commit; a tree that travelled without .git falls back to the commit the pack was
# made at (commitSource says which).
COMMIT_SOURCE=git
COMMIT=${PRIMAL_GIT_COMMIT:-$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null)}
if [ -z "$COMMIT" ]; then
  COMMIT=$(cat "$PACK/COMMIT" 2>/dev/null || echo unknown)
  COMMIT_SOURCE=pack
fi
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -v '^??' | wc -l | tr -d ' ')
export PRIMAL_GIT_COMMIT=$COMMIT

python3 "$MERGE_PY" "$RESULT" --init "commit=\"$COMMIT\"" "commitSource=$COMMIT_SOURCE" "dirtyFiles=${DIRTY:-0}" "gpu=$([ $HAVE_GPU = 1 ] && echo true || echo false)" \
  "deadlineS=$DEADLINE_S" "started=\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"" "steps=$STEPS" "batch=$BATCH"

# ---- stages -----------------------------------------------------------------------------------

stage_env() {
  {
    echo "## machine"; nvidia-smi 2>&1 || echo "no nvidia-smi"
    echo "## tools"; for t in node nvcc cmake python3 ninja; do printf '%s: ' "$t"; command -v "$t" || echo missing; done
    nvcc --version 2>&1 | tail -2; cmake --version 2>&1 | head -1
    echo "## cpu"; nproc; uname -a
  } > "$STAGE_DIR/env.txt" 2>&1
  python3 - "$STAGE_DIR/env.json" <<'EOF'
import json, os, shutil, subprocess, sys
def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"unavailable: {e!r}"[:200]
env = {"nproc": os.cpu_count(), "tools": {t: shutil.which(t) for t in ("node", "nvcc", "cmake", "ninja", "nvidia-smi")}}
if env["tools"]["nvidia-smi"]:
    env["gpus"] = run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm", "--format=csv,noheader"])
if env["tools"]["nvcc"]:
    env["nvcc"] = run(["nvcc", "--version"]).splitlines()[-1:]
try:
    import torch
    env["torch"] = torch.__version__
    env["torchCuda"] = torch.version.cuda
    env["torchGpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as e:  # noqa: BLE001
    env["torch"] = f"unavailable: {e!r}"[:200]
try:
    import nvidia.cublas
    env["cublasWheel"] = list(nvidia.cublas.__path__)[0]
except Exception:  # noqa: BLE001
    env["cublasWheel"] = None
env["cublasToolkit"] = os.path.exists("/usr/local/cuda/include/cublasLt.h")
json.dump(env, open(sys.argv[1], "w"))
EOF
  add_merge --json "$STAGE_DIR/env.json"
  add_merge --log "$STAGE_DIR/env.txt"
}

# cuBLAS: the toolkit's, else the Python wheel's (include/ and lib/ beside each other).
cublas_dir() {
  [ -f /usr/local/cuda/include/cublasLt.h ] && return 0
  python3 -c "import nvidia.cublas, os; print(list(nvidia.cublas.__path__)[0])" 2>/dev/null
}

stage_build() {
  local d
  d=$(cublas_dir)
  local cub=()
  if [ -n "$d" ]; then cub=("-DPRIMAL_CUBLAS_DIR=$d"); export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"; fi
  # The probe compiles beside the core (its own nvcc process).
  local inc=() lib=()
  if [ -n "$d" ]; then inc=("-I$d/include"); lib=("-L$d/lib" "-Xlinker" "-rpath=$d/lib"); fi
  ( nvcc -O2 -std=c++17 -arch=sm_90 "${inc[@]}" "$HERE/probe_cublaslt.cu" -o "$WORK/probe_cublaslt" "${lib[@]}" -lcublasLt \
      > "$STAGE_DIR/probe-build.log" 2>&1 ) &
  local probe=$!
  local ok=1
  cmake -S "$ROOT/native" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 "${cub[@]}" \
      > "$STAGE_DIR/build.log" 2>&1 \
    && cmake --build "$BUILD" -j"$(nproc)" --target primal_core_test primal_bench >> "$STAGE_DIR/build.log" 2>&1 || ok=0
  wait "$probe"; local prc=$?
  local cuda=false
  grep -q "CUDA backend enabled" "$STAGE_DIR/build.log" && cuda=true
  add_merge --set "cudaBackend=$cuda"
  add_merge --set "probeBuilt=$([ $prc = 0 ] && echo true || echo false)"
  add_merge --log "$STAGE_DIR/build.log"
  add_merge --log "$STAGE_DIR/probe-build.log"
  [ $ok = 1 ] && [ $cuda = true ]
}

# Three processes, so that a device fault (sticky: every later CUDA call in that process fails)
# cannot hide the other results: every cuda/ case but the tensor-core attention ones; the bf16
# trainer on the tensor-core attention; then, last, the tensor-core attention cases (WMMA kernels
# that have never run on a GPU).
stage_gates() {
  local exe="$BUILD/primal_core_test"
  [ -x "$exe" ] || { echo "no $exe (build failed)"; return 1; }
  local d; d=$(cublas_dir); [ -n "$d" ] && export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"
  local rc=0 t tc="cuda/attention tc"
  # The later two runs are short (one trainer step; small attention cases): keep 45 s for them.
  t=$(( $(stage_left) - 45 ))
  [ "$t" -lt $(( $(stage_left) / 2 )) ] && t=$(( $(stage_left) / 2 ))
  timeout -k 3 "$t" "$exe" --exclude "$tc" cuda/ > "$STAGE_DIR/tests-cuda.log" 2>&1 || rc=1
  # A build without the CUDA backend has no cuda/ cases: that is no pass.
  grep -q '^ok ' "$STAGE_DIR/tests-cuda.log" || { echo "no cuda/ test passed"; rc=1; }
  add_merge --tests "$STAGE_DIR/tests-cuda.log"
  t=$(( $(stage_left) - 20 ))
  [ "$t" -lt $(( $(stage_left) / 2 )) ] && t=$(( $(stage_left) / 2 ))
  if [ "$t" -gt 5 ]; then
    PRIMAL_CUDA_ATTN=tc timeout -k 3 "$t" "$exe" "cuda/bf16 trainer" > "$STAGE_DIR/tests-cuda-attn-tc.log" 2>&1 || rc=1
    add_merge --tests "$STAGE_DIR/tests-cuda-attn-tc.log"
  fi
  t=$(stage_left)
  if [ "$t" -gt 5 ]; then
    timeout -k 3 "$t" "$exe" "$tc" > "$STAGE_DIR/tests-cuda-attention-tc.log" 2>&1 || rc=1
    add_merge --tests "$STAGE_DIR/tests-cuda-attention-tc.log"
  else
    echo "no time left for the $tc cases"; rc=1
  fi
  return $rc
}

bench_base() {
  echo --device cuda --preset ghost-0.1b --batch "$BATCH" --steps "$STEPS" --warmup 2 --peak-tflops 989
}

stage_throughput() {
  local d; d=$(cublas_dir); [ -n "$d" ] && export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"
  # Rows stream into the file as they finish: a timeout keeps the ones before it.
  "$BUILD/primal_bench" $(bench_base) --configs "$HERE/throughput.conf" > "$STAGE_DIR/rows.jsonl" 2> "$STAGE_DIR/bench.err"
  local rc=$?
  add_merge --jsonl "$STAGE_DIR/rows.jsonl"
  add_merge --log "$STAGE_DIR/bench.err"
  return $rc
}

stage_profile() {
  local d; d=$(cublas_dir); [ -n "$d" ] && export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"
  PRIMAL_CUDA_PROFILE=1 "$BUILD/primal_bench" --device cuda --preset ghost-0.1b --batch "$BATCH" --steps 6 --warmup 2 \
    --peak-tflops 989 --configs "$HERE/profile.conf" > "$STAGE_DIR/rows.jsonl" 2> "$STAGE_DIR/profile.txt"
  local rc=$?
  cp "$STAGE_DIR/profile.txt" "$OUT/profile.txt" 2>/dev/null
  add_merge --jsonl "$STAGE_DIR/rows.jsonl"
  return $rc
}

stage_probes() {
  local d; d=$(cublas_dir); [ -n "$d" ] && export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"
  local rc=0
  if [ -x "$WORK/probe_cublaslt" ]; then
    timeout -k 3 $(( $(stage_left) / 2 )) "$WORK/probe_cublaslt" > "$STAGE_DIR/cublaslt.jsonl" 2> "$STAGE_DIR/cublaslt.err" || rc=1
    add_merge --jsonl "$STAGE_DIR/cublaslt.jsonl"
    add_merge --log "$STAGE_DIR/cublaslt.err"
  else
    echo "probe_cublaslt was not built"; rc=1
  fi
  PYTHONUNBUFFERED=1 timeout -k 3 "$(stage_left)" python3 "$HERE/probe_torch.py" > "$STAGE_DIR/torch.jsonl" 2> "$STAGE_DIR/torch.err" || rc=1
  add_merge --jsonl "$STAGE_DIR/torch.jsonl"
  add_merge --log "$STAGE_DIR/torch.err"
  return $rc
}

stage_stack() {
  if [ ! -d "$PACK" ]; then
    echo "skipped: no .gpu-pack carried (run test/bench/gpu/pack-node.sh first)" > "$STAGE_DIR/status"
    return 0
  fi
  bash "$HERE/stack-check.sh"
}

# Data parallel (docs/distributed.md): one NCCL rank and one MPI rank against the plain run, when
# the machine has MPI (and NCCL); the script skips with its reason otherwise.
stage_dist() {
  OUT="$STAGE_DIR" DIST_BUILD_DIR="$WORK/dist-build" timeout -k 5 "$(stage_left)" bash "$HERE/distributed-check.sh" \
    > "$STAGE_DIR/dist.log" 2>&1
  local rc=$?
  [ -f "$STAGE_DIR/dist.jsonl" ] && add_merge --jsonl "$STAGE_DIR/dist.jsonl"
  add_merge --log "$STAGE_DIR/dist.log"
  return $rc
}

stage_peers() {
  local peer="$ROOT/test/bench/peer/torch_peer.py" rc=0
  : > "$STAGE_DIR/rows.jsonl"
  # Eager first (always), then torch.compile while at least 90 s are left.
  local runs=("--quant ste --bf16" "--quant ste --bf16 --compile" "--quant fp --bf16 --compile")
  local i=0
  for args in "${runs[@]}"; do
    local left; left=$(stage_left)
    if [ $i -gt 0 ] && [ "$left" -lt 90 ]; then
      echo "{\"engine\":\"pytorch\",\"args\":\"$args\",\"skipped\":\"deadline (${left}s left)\"}" >> "$STAGE_DIR/rows.jsonl"
      i=$((i + 1)); continue
    fi
    PYTHONUNBUFFERED=1 timeout -k 3 "$left" python3 "$peer" --device cuda --preset ghost-0.1b --batch "$BATCH" --steps "$STEPS" \
      --warmup 3 $args > "$STAGE_DIR/peer.out" 2>> "$STAGE_DIR/peer.err"
    local prc=$?
    if [ $prc = 0 ] && tail -1 "$STAGE_DIR/peer.out" | python3 -c "import json,sys; json.loads(sys.stdin.read())" 2>/dev/null; then
      tail -1 "$STAGE_DIR/peer.out" >> "$STAGE_DIR/rows.jsonl"
    else
      echo "{\"engine\":\"pytorch\",\"args\":\"$args\",\"error\":\"exit $prc\"}" >> "$STAGE_DIR/rows.jsonl"; rc=1
    fi
    i=$((i + 1))
  done
  add_merge --jsonl "$STAGE_DIR/rows.jsonl"
  add_merge --log "$STAGE_DIR/peer.err"
  return $rc
}

# The seed experiment (issue: reproduce the seed on ghost-0.1b): Node and the addon from the pack,
# then poltergeist, ste and fp, each under RUN_S (default: a third of what the stage has left
# after setup and evaluation, at most 150 s).
stage_seed() {
  if [ ! -d "$PACK" ] || [ ! -d "$PACK/cache" ]; then
    echo "skipped: no .gpu-pack with token caches (PRIMAL_WIKITEXT_DIR=... pack-node.sh)" > "$STAGE_DIR/status"
    return 0
  fi
  SETUP_ONLY=1 bash "$HERE/stack-check.sh" || { echo "stack setup failed"; return 1; }
  export PATH="$ROOT/build/gpu-node/bin:$PATH"
  local d; d=$(cublas_dir); [ -n "$d" ] && export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"
  local left run
  left=$(stage_left)
  run=$(( (left - 100) / 3 ))
  [ "$run" -gt 150 ] && run=150
  export RUN_S=${RUN_S:-$run}
  add_merge --set "runS=$RUN_S"
  mkdir -p "$OUT/results"
  mkdir -p "$WORK/cache" && cp -r "$PACK/cache/." "$WORK/cache/"
  ( cd "$ROOT" && PRIMAL_CACHE_DIR="$WORK/cache" PRIMAL_WIKITEXT_DIR="$PACK/wikitext-2" RESULTS="$OUT/results" \
      timeout -k 5 "$(stage_left)" node "$HERE/ghost-seed.mjs" ) > "$STAGE_DIR/seed.jsonl" 2> "$STAGE_DIR/seed.err"
  local rc=$?
  add_merge --jsonl "$STAGE_DIR/seed.jsonl"
  add_merge --log "$STAGE_DIR/seed.err"
  return $rc
}

# Packs every stage's logs after each stage (one file back, whatever happens next).
pack_logs() {
  cp "$WORK/summary.txt" "$OUT/summary.txt" 2>/dev/null
  tar -C "$WORK" --exclude='probe_cublaslt' -czf "$OUT/logs.tar.gz" . 2>/dev/null
}

for spec in "env 30 none" "build 240 gpu" "gates 120 gpu" "throughput 150 gpu" "profile 60 gpu" \
            "probes 75 gpu" "peers 240 gpu" "stack 180 gpu" "dist 180 gpu" "seed 590 gpu"; do
  set -- $spec
  run_stage "$1" "$2" "$3"
  pack_logs
done
python3 "$MERGE_PY" "$RESULT" --summary | tee -a "$WORK/summary.txt"
pack_logs
exit 0
