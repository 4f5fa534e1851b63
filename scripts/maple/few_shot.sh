#!/usr/bin/env bash
# Few-shot: train on SHOTS images per class of all classes of DATASET, test on all classes
# (MaPLe's base-to-novel config; the MaPLe release has no few-shot one).
#   bash scripts/maple/few_shot.sh DATASET SHOTS SEED [KEY VALUE ...]
# Environment: TRAINER (MaPLe_TextRefiner | MaPLe), CFG, DATA, OUTPUT (see README).
exec bash "$(dirname "$0")/../protocol.sh" maple few_shot "$@"
