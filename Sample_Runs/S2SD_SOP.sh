#!/usr/bin/env bash
# S2SD paper, Stanford Online Products (REFERENCE.md §7.1): margin baselines (distance mining, beta 1.2) and
# Margin+S2SD (source and targets margin with distance mining, feature weight 5, no pool aggregation) on
# ResNet-50 at 128 and 512 and BN-Inception at 512.
#   DATA=/data SEEDS="0 1 2 3 4" bash Sample_Runs/S2SD_SOP.sh             (settings: Sample_Runs/_common.sh)
source "$(dirname "$0")/_common.sh"
DATASET=(--dataset online_products)
MARGIN=(--loss margin --batch_mining distance)
S2SD_MARGIN=("${S2SD_MSDF[@]}" --loss_s2sd_source margin --loss_s2sd_target margin --batch_mining distance
             --loss_s2sd_feat_w 5)

run SOP_R50-128_Margin "${DATASET[@]}" "${R50_128[@]}" "${MARGIN[@]}"
run SOP_R50-128_Margin_S2SD "${DATASET[@]}" "${R50_128[@]}" "${S2SD_MARGIN[@]}"
run SOP_R50-512_Margin "${DATASET[@]}" "${R50_512[@]}" "${MARGIN[@]}"
run SOP_R50-512_Margin_S2SD "${DATASET[@]}" "${R50_512[@]}" "${S2SD_MARGIN[@]}"
run SOP_BNI-512_Margin "${DATASET[@]}" "${BNI_512[@]}" "${MARGIN[@]}"
run SOP_BNI-512_Margin_S2SD "${DATASET[@]}" "${BNI_512[@]}" "${S2SD_MARGIN[@]}"
