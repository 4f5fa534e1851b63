#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train on ImageNet (or $SOURCE, e.g. testbed_shapes), all classes, 16 shots.
#   bash scripts/coop/xd_train.sh SEED [KEY VALUE ...]
# Environment: TRAINER (CoOp_TextRefiner | CoOp), CFG, DATA, OUTPUT, SHOTS, SOURCE, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" coop xd_train "$@"
