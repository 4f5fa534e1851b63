#!/usr/bin/env bash
# Base-to-novel, step 1: train on the base classes of DATASET (16 shots) with seed SEED;
# the final test scores the base classes.
#   bash scripts/ivlp/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (IVLP), CFG, DATA, OUTPUT, SHOTS (see README).
exec bash "$(dirname "$0")/../protocol.sh" ivlp base2new_train "$@"
