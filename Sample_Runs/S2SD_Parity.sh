#!/usr/bin/env bash
# The paper's sweeps as the published code trained them: S2SD_CUB200.sh, S2SD_CARS196.sh, S2SD_SOP.sh and
# S2SD_Ablation.sh with PARITY=1, i.e. every command with --reference_parity (the margin normaliser, S2SD's
# learning rates and head weight decay, the miner without upper cutoff, class_random with replacement, k-means
# with the training classes, ...; docs/reference_parity.md) and its group suffixed _PARITY, so a sweep and its
# parity variant can share a SAVE folder and be tabulated side by side with Result_Evaluations.py.
#   DATA=/data SEEDS="0 1 2 3 4" bash Sample_Runs/S2SD_Parity.sh [CUB200 CARS196 SOP Ablation]
set -euo pipefail
here="$(dirname "$0")"
sweeps=("$@")
if [[ ${#sweeps[@]} == 0 ]]; then
    sweeps=(CUB200 CARS196 SOP Ablation)
fi
for sweep in "${sweeps[@]}"; do
    if [[ ! -f "$here/S2SD_$sweep.sh" || $sweep == Parity ]]; then
        echo "S2SD_Parity.sh: unknown sweep '$sweep'; choose from CUB200 CARS196 SOP Ablation" >&2
        exit 2
    fi
    PARITY=1 bash "$here/S2SD_$sweep.sh"
done
