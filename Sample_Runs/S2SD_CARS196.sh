#!/usr/bin/env bash
# S2SD paper, CARS196 (REFERENCE.md §7.1): multisimilarity baselines and Multisimilarity+S2SD (source and
# targets multisimilarity, feature weight 50, pool aggregation) on ResNet-50 at 128 and 512 and BN-Inception at 512.
#   DATA=/data SEEDS="0 1 2 3 4" bash Sample_Runs/S2SD_CARS196.sh          (settings: Sample_Runs/_common.sh)
source "$(dirname "$0")/_common.sh"
DATASET=(--dataset cars196)
MS=(--loss multisimilarity)
S2SD_MS=("${S2SD_MSDF[@]}" --loss_s2sd_source multisimilarity --loss_s2sd_target multisimilarity
         --loss_s2sd_feat_w 50 --loss_s2sd_pool_aggr)

run CARS_R50-128_MS "${DATASET[@]}" "${R50_128[@]}" "${MS[@]}"
run CARS_R50-128_MS_S2SD "${DATASET[@]}" "${R50_128[@]}" "${S2SD_MS[@]}"
run CARS_R50-512_MS "${DATASET[@]}" "${R50_512[@]}" "${MS[@]}"
run CARS_R50-512_MS_S2SD "${DATASET[@]}" "${R50_512[@]}" "${S2SD_MS[@]}"
run CARS_BNI-512_MS "${DATASET[@]}" "${BNI_512[@]}" "${MS[@]}"
run CARS_BNI-512_MS_S2SD "${DATASET[@]}" "${BNI_512[@]}" "${S2SD_MS[@]}"
