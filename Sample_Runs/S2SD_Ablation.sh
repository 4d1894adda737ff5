#!/usr/bin/env bash
# S2SD paper ablation (REFERENCE.md §7.2): Margin (beta 1.2), R-Margin (beta 0.6) and Multisimilarity, each
# alone and with DSD (one 2048-d target branch), MSD (four branches), MSDF (+ feature distillation) and MSDFA
# (+ pool aggregation of the branch input). The published table does not state the backbone; ResNet-50 at 128
# is assumed. R-Margin is margin with rho_distance mining at push probability 0.35 (the reference sweep used
# 0.3-0.4). The feature weight is 50, and 5 on SOP as in the main recipe.
#   DATA=/data DATASETS="cub200 cars196 online_products" bash Sample_Runs/S2SD_Ablation.sh
source "$(dirname "$0")/_common.sh"
DATASETS=${DATASETS:-"cub200 cars196 online_products"}

for dataset in $DATASETS; do
    case $dataset in
        cub200) tag=CUB; feat_w=50 ;;
        cars196) tag=CARS; feat_w=50 ;;
        online_products) tag=SOP; feat_w=5 ;;
        *) echo "S2SD_Ablation.sh: unknown dataset '$dataset' in DATASETS" >&2; exit 2 ;;
    esac
    for base in Margin RMargin MS; do
        case $base in
            Margin) loss=margin; extra=(--batch_mining distance --loss_margin_beta 1.2) ;;
            RMargin) loss=margin; extra=(--batch_mining rho_distance --miner_rho_distance_cp 0.35 --loss_margin_beta 0.6) ;;
            MS) loss=multisimilarity; extra=() ;;
        esac
        s2sd=(--loss s2sd --loss_s2sd_source "$loss" --loss_s2sd_target "$loss" --loss_s2sd_T 1 --loss_s2sd_w 50)
        msd=("${s2sd[@]}" --loss_s2sd_target_dims 512 1024 1536 2048)
        msdf=("${msd[@]}" --loss_s2sd_feat_distill --loss_s2sd_feat_distill_delay 1000 --loss_s2sd_feat_w "$feat_w")
        common=(--dataset "$dataset" "${R50_128[@]}" "${extra[@]}")
        run "${tag}_ABL_${base}" "${common[@]}" --loss "$loss"
        run "${tag}_ABL_${base}_DSD" "${common[@]}" "${s2sd[@]}" --loss_s2sd_target_dims 2048
        run "${tag}_ABL_${base}_MSD" "${common[@]}" "${msd[@]}"
        run "${tag}_ABL_${base}_MSDF" "${common[@]}" "${msdf[@]}"
        run "${tag}_ABL_${base}_MSDFA" "${common[@]}" "${msdf[@]}" --loss_s2sd_pool_aggr
    done
done
