#!/usr/bin/env bash
# Base-to-novel, step 2: evaluate the student base2new_train.sh produced on the novel classes, against
# the novel half of the teacher's classes (stored in the student's checkpoint: no teacher needed).
#   bash scripts/promptkd/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (PromptKD_TextRefiner | PromptKD), CFG, DATA, OUTPUT, SHOTS (see README).
exec bash "$(dirname "$0")/../protocol.sh" promptkd base2new_test "$@"
