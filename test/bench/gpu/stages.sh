# Stage runner of the device check (sourced by device-check.sh and by its test).
#
# One hard deadline for the whole command; each stage runs under its own timeout, the smaller of
# its budget and what the deadline has left, and is merged into $RESULT as soon as it ends, so a
# stage that times out (or a command killed from outside) still leaves every earlier stage there.
#
# Needs: RESULT (result.json path), WORK (scratch folder), MERGE_PY (merge_result.py), END (epoch
# second of the deadline), HAVE_GPU (0/1), STAGES (comma list of selected stages, or "all").
# A stage is a function stage_NAME run in a child bash; it writes files into $STAGE_DIR and lists
# merge_result.py options for them in $STAGE_DIR/merge.args (one argument per line).

RESERVE_S=${RESERVE_S:-5}      # kept back for the last merges
MIN_STAGE_S=${MIN_STAGE_S:-8}  # a stage with less time than this is skipped

now_s() { date +%s; }
left_s() { echo $((END - $(now_s) - RESERVE_S)); }

# Appends merge options for a file of the current stage: add_merge --jsonl rows.jsonl
add_merge() {
  printf '%s\n%s\n' "$1" "$2" >> "$STAGE_DIR/merge.args"
}

say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$WORK/summary.txt"; }

# run_stage NAME BUDGET_S NEEDS   (NEEDS: gpu or none)
run_stage() {
  local name=$1 budget=$2 needs=$3
  if [ "${STAGES:-all}" != all ] && [[ ",$STAGES," != *",$name,"* ]]; then
    python3 "$MERGE_PY" "$RESULT" --stage "$name" --status "skipped: not selected"
    return 0
  fi
  if [ "$needs" = gpu ] && [ "${HAVE_GPU:-0}" != 1 ]; then
    python3 "$MERGE_PY" "$RESULT" --stage "$name" --status "skipped: no GPU"
    say "$name: skipped (no GPU)"
    return 0
  fi
  local left
  left=$(left_s)
  local t=$budget
  [ "$left" -lt "$t" ] && t=$left
  if [ "$t" -lt "$MIN_STAGE_S" ]; then
    python3 "$MERGE_PY" "$RESULT" --stage "$name" --status "skipped: deadline" --set "leftS=$left"
    say "$name: skipped (deadline, ${left}s left)"
    return 0
  fi
  export STAGE_DIR="$WORK/$name" STAGE_END=$(( $(now_s) + t ))
  rm -rf "$STAGE_DIR"
  mkdir -p "$STAGE_DIR"
  : > "$STAGE_DIR/merge.args"
  say "$name: start (timeout ${t}s, ${left}s left)"
  local t0 rc status
  t0=$(date +%s.%N)
  # Every function of this shell travels to the child bash (stage bodies and their helpers).
  export -f $(declare -F | awk '{print $3}')
  timeout -k 5 "$t" bash -c "stage_$name" > "$STAGE_DIR/stage.log" 2>&1
  rc=$?
  local secs
  secs=$(python3 -c "import time,sys; print(round(time.time()-float(sys.argv[1]),2))" "$t0")
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status="failed (exit $rc)" ;;
  esac
  # A stage may name its own outcome (e.g. "skipped: no .gpu-pack") in $STAGE_DIR/status.
  [ -s "$STAGE_DIR/status" ] && [ $rc != 124 ] && [ $rc != 137 ] && status=$(head -1 "$STAGE_DIR/status")
  local args=()
  while IFS= read -r line; do args+=("$line"); done < "$STAGE_DIR/merge.args"
  python3 "$MERGE_PY" "$RESULT" --stage "$name" --status "$status" --seconds "$secs" --timeout "$t" \
    --log "$STAGE_DIR/stage.log" "${args[@]}" \
    || python3 "$MERGE_PY" "$RESULT" --stage "$name" --status "$status; merge failed" --seconds "$secs"
  say "$name: $status in ${secs}s"
  return 0
}

# Seconds left to the current stage's own timeout (for sub-steps inside a stage).
stage_left() { echo $((STAGE_END - $(now_s) - 2)); }
