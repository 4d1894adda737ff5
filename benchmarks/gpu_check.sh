#!/usr/bin/env bash
# The CUDA checks and the recipe benchmark of issue 10, for one GPU machine, in one go:
#
#     timeout 560 bash benchmarks/gpu_check.sh          # from the repository root
#
# Expected 5-6 minutes on an H200 (tree ~20 s, benchmark ~3 min, checks ~2 min); every stage has its own cap
# (all caps together: 9 minutes). The benchmark runs first, then each check in its own Python process under
# its own timeout, so a failing (or hanging, or crashing) check is reported and the next one still runs. Logs go to "$OUT" when
# that variable is set (else /tmp/s2sd_gpu_check/logs); the synthetic data and run folders to
# $S2SD_BENCH_ROOT (default /tmp/s2sd_bench). Needs no internet, no faiss, no pytest and no pretrained
# weights: ResNet-50 starts from random weights (--not_pretrained), which trains at the same speed.
# Set GPU_CHECK_EPOCHS to change the benchmark's epochs per column (default 3).
set -u
cd "$(dirname "$0")/.."
LOGS="${OUT:-/tmp/s2sd_gpu_check/logs}"
WORK="${S2SD_BENCH_ROOT:-/tmp/s2sd_bench}"
mkdir -p "$LOGS" "$WORK"
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
PY="${PYTHON:-python}"
failed=0

check() {  # check NAME SECONDS
    local start=$SECONDS
    timeout "$2" "$PY" benchmarks/gpu_check.py "$1" --work "$WORK/checks" >"$LOGS/$1.log" 2>&1
    local rc=$?
    if [ $rc -eq 0 ]; then
        echo "$(grep -m1 '^CHECK' "$LOGS/$1.log") [$((SECONDS - start)) s]"
    else
        failed=1
        [ $rc -eq 124 ] && echo "CHECK $1: TIMEOUT after $2 s" >>"$LOGS/$1.log"
        echo "CHECK $1: FAIL (exit $rc, $((SECONDS - start)) s) -- last lines of $LOGS/$1.log:"
        tail -n 5 "$LOGS/$1.log" | sed 's/^/    /'
    fi
}

"$PY" - <<'PYEOF' 2>&1 | tee "$LOGS/environment.log"
import torch, torchvision
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
PYEOF

# The synthetic CUB tree for the benchmark, made first (in parallel, once; reused on a second call).
timeout 45 "$PY" benchmarks/synthetic_cub.py --root "$WORK/full" >"$LOGS/synthetic_cub.log" 2>&1 \
    && echo "synthetic tree: $(cat "$LOGS/synthetic_cub.log")" || { failed=1; echo "synthetic tree: FAIL"; }

# The recipe benchmark first: its figures are what the README quotes.
timeout 225 "$PY" benchmarks/recipe_speed.py --root "$WORK" --epochs "${GPU_CHECK_EPOCHS:-3}" \
    --json "$LOGS/recipe_speed.json" >"$LOGS/recipe_speed.log" 2>&1 || { failed=1; echo "recipe benchmark: FAIL"; }
grep -A 10 "^recipe:" "$LOGS/recipe_speed.log" || tail -n 20 "$LOGS/recipe_speed.log"

check bf16_step 35
check fp16_scaler 25
check image_store 50
check metrics 30
check nan_stop 35
check resume 90

# Distributed training (issue 11) lands later: run one process through torchrun once main.py supports it.
if grep -q "init_process_group" main.py utilities/*.py 2>/dev/null; then
    timeout 60 torchrun --nproc_per_node 1 main.py --dataset cub200 --source_path "$WORK/checks/small_tree" \
        --arch slimresnet18_normalize --not_pretrained --bs 4 --resolution 64 --n_epochs 1 --no_train_metrics \
        --tsne_points 0 --save_path "$WORK/checks/ddp" >"$LOGS/ddp.log" 2>&1 \
        && echo "CHECK ddp: PASS (torchrun --nproc_per_node 1)" | tee -a "$LOGS/ddp.log" \
        || { failed=1; echo "CHECK ddp: FAIL (see $LOGS/ddp.log)"; }
else
    echo "SKIP ddp: main.py has no distributed support yet" | tee "$LOGS/ddp.log"
fi

"$PY" benchmarks/gpu_check.py summary --logs "$LOGS"
exit $failed
