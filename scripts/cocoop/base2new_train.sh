#!/usr/bin/env bash
# Base-to-novel, step 1: train on the base classes of DATASET (16 shots) with seed SEED;
# the final test scores the base classes.
#   bash scripts/cocoop/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (CoCoOp | CoCoOp_TextRefiner), CFG, DATA, OUTPUT, SHOTS, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" cocoop base2new_train "$@"
