#!/usr/bin/env bash
# Few-shot: train on SHOTS images per class of all classes of DATASET, test on all classes.
#   bash scripts/coop/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]   (no SEED: seeds 1, 2, 3)
# Environment: TRAINER (CoOp_TextRefiner | CoOp), CFG, DATA, OUTPUT, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" coop few_shot "$@"
