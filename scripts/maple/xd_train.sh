#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train on ImageNet (or $SOURCE, e.g. testbed_shapes), all classes, 16 shots
# (MaPLe's cross-dataset config: prompt depth 3, 2 epochs).
#   bash scripts/maple/xd_train.sh SEED [KEY VALUE ...]
# Environment: TRAINER (MaPLe_TextRefiner | MaPLe), CFG, DATA, OUTPUT, SHOTS, SOURCE, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" maple xd_train "$@"
