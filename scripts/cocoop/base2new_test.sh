#!/usr/bin/env bash
# Base-to-novel, step 2: evaluate the model base2new_train.sh produced on the new classes.
#   bash scripts/cocoop/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (CoCoOp | CoCoOp_TextRefiner), CFG, DATA, OUTPUT, SHOTS, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" cocoop base2new_test "$@"
