#!/usr/bin/env bash
# Base-to-novel, step 2: evaluate the model base2new_train.sh produced on the new classes
# (IVLP's config keeps the last epoch, which is the one loaded).
#   bash scripts/ivlp/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (IVLP), CFG, DATA, OUTPUT, SHOTS (see README).
exec bash "$(dirname "$0")/../protocol.sh" ivlp base2new_test "$@"
