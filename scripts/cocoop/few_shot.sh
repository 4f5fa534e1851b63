#!/usr/bin/env bash
# Few-shot: train on SHOTS images per class of all classes of DATASET, test on all classes.
#   bash scripts/cocoop/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]   (no SEED: seeds 1, 2, 3)
# Environment: TRAINER (CoCoOp | CoCoOp_TextRefiner), CFG, DATA, OUTPUT, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" cocoop few_shot "$@"
