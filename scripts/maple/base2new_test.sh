#!/usr/bin/env bash
# Base-to-novel, step 2: evaluate the model base2new_train.sh produced on the new classes
# (MaPLe's configs keep the last epoch, which is the one loaded).
#   bash scripts/maple/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (MaPLe_TextRefiner | MaPLe), CFG, DATA, OUTPUT, SHOTS, TAG, OVERWRITE (see README).
exec bash "$(dirname "$0")/../protocol.sh" maple base2new_test "$@"
