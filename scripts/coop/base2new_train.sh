#!/usr/bin/env bash
# Base-to-novel, step 1: train on the base classes of DATASET (16 shots) with seed SEED;
# the final test scores the base classes.
#   bash scripts/coop/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (CoOp_TextRefiner | CoOp), CFG, DATA, OUTPUT, SHOTS, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" coop base2new_train "$@"
