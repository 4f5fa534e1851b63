#!/usr/bin/env bash
# CoOp's main.sh: few-shot training of DATASET for seeds 1, 2, 3 with the context settings in
# the arguments, written where CoOp writes it, the settings naming their own folder:
#   output/DATASET/TRAINER/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seedS
#   bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC [KEY VALUE ...]
#   e.g. bash scripts/coop/main.sh oxford_pets vit_b16_ep10_ctxv1 end 16 4 False
# CTP: class token position (end, middle, front); CSC: class-specific context (False, True).
# A config with TRAINER.COOP.CTX_INIT set (the shipped vit_b16_ep10_ctxv1) takes its context
# length from those words, so NCTX only matters with CTX_INIT "" (as CoOp's rn50_* configs).
# Runs CoOp_TextRefiner unless TRAINER=CoOp is set (CoOp's own script always runs CoOp).
if [ "$#" -lt 6 ]; then
    echo "usage: bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC [KEY VALUE ...]" >&2
    exit 2
fi
dataset=$1 cfg=$2 ctp=$3 nctx=$4 shots=$5 csc=$6
shift 6
CFG=$cfg TAG="nctx${nctx}_csc${csc}_ctp${ctp}" exec bash "$(dirname "$0")/../protocol.sh" coop few_shot \
    "$dataset" "$shots" TRAINER.COOP.N_CTX "$nctx" TRAINER.COOP.CSC "$csc" \
    TRAINER.COOP.CLASS_TOKEN_POSITION "$ctp" "$@"
