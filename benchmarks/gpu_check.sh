#!/usr/bin/env bash
# The CUDA checks and the recipe benchmark of issue 10 (and issue 11's torchrun check), for one GPU machine, in one go:
#
#     bash benchmarks/gpu_check.sh          # from the repository root; ends within GPU_CHECK_BUDGET seconds
#
# Expected 6-7 minutes on an H200 (tree ~20 s, benchmark ~3 min, checks ~2-3 min). Every stage has its own cap,
# and each cap is cut to what is left of GPU_CHECK_BUDGET (default 530 s, minus 15 s for the summary), so the
# script ends in time whatever hangs: a stage with no time left is reported as skipped. The benchmark runs
# first, then each check in its own Python process under its own timeout, so a failing (or hanging, or
# crashing) check is reported and the next one still runs. The logs (12 files) are written to
# $S2SD_BENCH_ROOT/logs and, when $OUT is set, packed into $OUT/gpu_check_logs.tar.gz next to
# $OUT/gpu_check_summary.txt (the table printed at the end); the synthetic data and run folders go to
# $S2SD_BENCH_ROOT (default /tmp/s2sd_bench). Needs no internet, no faiss, no wandb, no pytest and no
# pretrained weights: ResNet-50 starts from random weights (--not_pretrained), which trains at the same speed.
# Python: $PYTHON, else python3. Set GPU_CHECK_EPOCHS to change the benchmark's epochs per column (default 3).
#
#     GPU_CHECK_REHEARSE=1 bash benchmarks/gpu_check.sh    # the same on the CPU, before a GPU is lent (~5 min)
#
# A rehearsal runs every check with `gpu_check.py --rehearse` (on the CPU; what only CUDA can give is printed as
# not checked) and the benchmark with --tiny, so that the script's own errors are found without GPU time.
set -u
cd "$(dirname "$0")/.."
WORK="${S2SD_BENCH_ROOT:-/tmp/s2sd_bench}"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
PY="${PYTHON:-$(command -v python3 || command -v python)}"
BUDGET="${GPU_CHECK_BUDGET:-530}"
REHEARSE=()
[ -n "${GPU_CHECK_REHEARSE:-}" ] && REHEARSE=(--rehearse) && BUDGET="${GPU_CHECK_BUDGET:-900}"
failed=0

pack_logs() {
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT"
        tar -czf "$OUT/gpu_check_logs.tar.gz" -C "$WORK" logs
    fi
}
trap pack_logs EXIT

cap() {  # cap SECONDS: SECONDS, or less when the budget (less 15 s: the kill grace and the summary) runs out first
    local left=$((BUDGET - 15 - SECONDS))
    echo $(($1 < left ? $1 : left))
}

stage() {  # stage NAME SECONDS COMMAND...: COMMAND under the capped timeout, its output in $LOGS/NAME.log
    local name=$1 seconds
    seconds=$(cap "$2")
    shift 2
    if [ "$seconds" -lt 5 ]; then
        echo "SKIP $name: out of the ${BUDGET} s budget" | tee "$LOGS/$name.log"
        failed=1
        return 1
    fi
    timeout -k 5 "$seconds" "$@" >"$LOGS/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 124 ] && echo "TIMEOUT after $seconds s" >>"$LOGS/$name.log"
    return $rc
}

check() {  # check NAME SECONDS
    local start=$SECONDS rc
    stage "$1" "$2" "$PY" benchmarks/gpu_check.py "$1" --work "$WORK/checks" "${REHEARSE[@]}"
    rc=$?
    if [ $rc -eq 0 ]; then
        echo "$(grep -m1 '^CHECK' "$LOGS/$1.log") [$((SECONDS - start)) s]"
    elif ! grep -q "^SKIP" "$LOGS/$1.log"; then
        failed=1
        echo "CHECK $1: FAIL (exit $rc, $((SECONDS - start)) s) -- last lines of $LOGS/$1.log:"
        tail -n 5 "$LOGS/$1.log" | sed 's/^/    /'
    fi
}

"$PY" - <<'PYEOF' 2>&1 | tee "$LOGS/environment.log"
import sys, torch, torchvision
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
PYEOF

if [ ${#REHEARSE[@]} -eq 0 ]; then
    # The synthetic CUB tree for the benchmark, made first (in parallel, once; reused on a second call).
    stage synthetic_cub 45 "$PY" benchmarks/synthetic_cub.py --root "$WORK/full" \
        && echo "synthetic tree: $(cat "$LOGS/synthetic_cub.log")" || { failed=1; echo "synthetic tree: FAIL"; }
    RECIPE=(--epochs "${GPU_CHECK_EPOCHS:-3}")
else
    RECIPE=(--tiny)
fi

# The recipe benchmark first: its figures are what the README quotes.
stage recipe_speed 225 "$PY" benchmarks/recipe_speed.py --root "$WORK" "${RECIPE[@]}" \
    --json "$LOGS/recipe_speed.json" || { failed=1; echo "recipe benchmark: FAIL"; }
grep -A 10 "^recipe:" "$LOGS/recipe_speed.log" || tail -n 20 "$LOGS/recipe_speed.log"

check bf16_step 35
check fp16_scaler 25
check image_store 50
check metrics 30
check nan_stop 35
check resume 150
check ddp 60  # issue 11: torchrun --nproc_per_node 1 against python main.py, same seed
check profile 40  # a diagnosis: the recipe's step time, host syncs per step and top kernels (last: skipped first)

"$PY" benchmarks/gpu_check.py summary --logs "$LOGS" | tee "$LOGS/summary.txt"
[ -n "${OUT:-}" ] && mkdir -p "$OUT" && cp "$LOGS/summary.txt" "$OUT/gpu_check_summary.txt"
exit $failed
