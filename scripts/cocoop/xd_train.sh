#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train on ImageNet (or $SOURCE, e.g. testbed_shapes), all classes, 16 shots.
#   bash scripts/cocoop/xd_train.sh SEED [KEY VALUE ...]
# Environment: TRAINER (CoCoOp | CoCoOp_TextRefiner), CFG, DATA, OUTPUT, SHOTS, SOURCE, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" cocoop xd_train "$@"
