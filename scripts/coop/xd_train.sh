#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train on ImageNet, all classes, 16 shots.
#   bash scripts/coop/xd_train.sh SEED [KEY VALUE ...]
# Environment: TRAINER (CoOp_TextRefiner | CoOp), CFG, DATA, OUTPUT, SHOTS, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" coop xd_train "$@"
