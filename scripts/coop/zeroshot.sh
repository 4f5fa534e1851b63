#!/usr/bin/env bash
# CoOp's zeroshot.sh: zero-shot CLIP ("a photo of a {class}." style prompts) on DATASET's test
# set, all classes, into output/ZeroshotCLIP/CFG/DATASET (CoOp's folder):
#   bash scripts/coop/zeroshot.sh DATASET [CFG] [KEY VALUE ...]
# CFG: a config of configs/trainers/CoOp/ (default vit_b16_ep10_ctxv1, whose backbone it uses).
# Base-to-novel's zero-shot rows: add DATASET.SUBSAMPLE_CLASSES base (or new).
# Environment: DATA (default ./data), OUTPUT (default ./output), PYTHON (default python).
set -euo pipefail
if [ "$#" -lt 1 ]; then
    echo "usage: bash scripts/coop/zeroshot.sh DATASET [CFG] [KEY VALUE ...]" >&2
    exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dataset=$1
cfg=${2:-vit_b16_ep10_ctxv1}
shift $(( $# < 2 ? 1 : 2 ))
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" "$repo/train.py" --root "${DATA:-data}" --trainer ZeroshotCLIP \
    --dataset-config-file "$repo/configs/datasets/${dataset}.yaml" \
    --config-file "$repo/configs/trainers/CoOp/${cfg}.yaml" \
    --output-dir "${OUTPUT:-output}/ZeroshotCLIP/${cfg}/${dataset}" --eval-only "$@"
