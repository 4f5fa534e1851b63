#!/usr/bin/env bash
# Base-to-novel, step 2: evaluate the model base2new_train.sh produced on the new classes
# (PromptSRC's configs keep the last epoch, the GPA average, which is the one loaded).
#   bash scripts/promptsrc/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (PromptSRC_TextRefiner | PromptSRC), CFG, DATA, OUTPUT, SHOTS (see README).
exec bash "$(dirname "$0")/../protocol.sh" promptsrc base2new_test "$@"
