#!/usr/bin/env bash
# Base-to-novel, step 1: train on the base classes of DATASET (16 shots) with seed SEED;
# the final test scores the base classes.
#   bash scripts/promptsrc/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (PromptSRC_TextRefiner | PromptSRC), CFG, DATA, OUTPUT, SHOTS (see README).
exec bash "$(dirname "$0")/../protocol.sh" promptsrc base2new_train "$@"
