#!/usr/bin/env bash
# Few-shot: train on SHOTS images per class of all classes of DATASET, test on all classes
# (MaPLe's base-to-novel config; the MaPLe release has no few-shot one).
#   bash scripts/maple/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]   (no SEED: seeds 1, 2, 3)
# Environment: TRAINER (MaPLe_TextRefiner | MaPLe), CFG, DATA, OUTPUT, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" maple few_shot "$@"
