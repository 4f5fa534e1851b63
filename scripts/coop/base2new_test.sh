#!/usr/bin/env bash
# Base-to-novel, step 2: evaluate the model base2new_train.sh produced on the new classes.
#   bash scripts/coop/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (CoOp_TextRefiner | CoOp), CFG, DATA, OUTPUT, SHOTS, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" coop base2new_test "$@"
