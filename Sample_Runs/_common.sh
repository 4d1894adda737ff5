# Shared by the Sample_Runs scripts (sourced, not run). Every setting can be overridden from the environment:
#   DATA     parent folder of the datasets (<DATA>/cub200, <DATA>/cars196, <DATA>/online_products; default ../Datasets)
#   SAVE     output root; runs go to <SAVE>/<dataset>/<group>_s<seed>      (default Training_Results)
#            (relative paths are relative to the folder you run the script from)
#   SEEDS    seeds to sweep                                                (default "0 1 2 3 4")
#   GPU      GPU id                                                        (default 0)
#   PROJECT  W&B project                                                   (default S2SD_Paper)
#   ONLINE   set to --log_online to log to W&B (key from WANDB_API_KEY, or WANDB_MODE=offline)
#   EXTRA    appended to every command, e.g. "--dry_run" (build everything, train nothing) or "--n_epochs 5"
#   PARITY   set to 1 to train as the published code did: every command gets --reference_parity and its group
#            the suffix _PARITY (docs/reference_parity.md; Sample_Runs/S2SD_Parity.sh runs every sweep so)
#   PYTHON   the interpreter                                               (default python)
# Summarise a finished sweep with: python Result_Evaluations.py --runs "$SAVE/<dataset>"
set -euo pipefail
MAIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/main.py"
DATA=${DATA:-../Datasets}
SAVE=${SAVE:-Training_Results}
SEEDS=${SEEDS:-"0 1 2 3 4"}
GPU=${GPU:-0}
PROJECT=${PROJECT:-S2SD_Paper}
ONLINE=${ONLINE:-}
EXTRA=${EXTRA:-}
PYTHON=${PYTHON:-python}
PARITY=${PARITY:-}

# The S2SD recipe of the reference Sample_Runs (REFERENCE.md §2.17): four target branches, KL weight 50 at T = 1,
# feature distillation after 1000 iterations; 150 epochs at batch size 112, no learning-rate decay.
TRAIN=(--n_epochs 150 --bs 112)
S2SD_MSDF=(--loss s2sd --loss_s2sd_T 1 --loss_s2sd_w 50 --loss_s2sd_target_dims 512 1024 1536 2048
           --loss_s2sd_feat_distill --loss_s2sd_feat_distill_delay 1000)
R50_128=(--arch resnet50_frozen_normalize --embed_dim 128)
R50_512=(--arch resnet50_frozen_normalize --embed_dim 512)
# The reference labelled some BN-Inception runs "frozen Batchnorm" but ran this same unfrozen arch (REFERENCE.md §6.5).
BNI_512=(--arch bninception_normalize --embed_dim 512)

# run GROUP FLAGS...: one training per seed, in <SAVE>/<dataset>/<GROUP>_s<seed> (<GROUP>_PARITY_s<seed> with PARITY=1)
run() {
    local group=$1
    shift
    if [[ $PARITY == 1 ]]; then
        group=${group}_PARITY
        set -- "$@" --reference_parity
    fi
    local seed
    for seed in $SEEDS; do
        # shellcheck disable=SC2086  # PYTHON, ONLINE and EXTRA are word lists on purpose
        $PYTHON "$MAIN" --source_path "$DATA" --save_path "$SAVE" --gpu "$GPU" --project "$PROJECT" \
            --seed "$seed" --group "$group" --savename "${group}_s${seed}" "${TRAIN[@]}" "$@" $ONLINE $EXTRA
    done
}
