#!/usr/bin/env bash
# Base-to-novel, step 1: distil a student on the unlabelled training images of ALL classes of DATASET
# (SHOTS per class, default 16; SHOTS=0 = every image, PromptKD's paper) with seed SEED, from the
# teacher in $TEACHER_DIR/<DATASET.NAME>/VLPromptLearner/model-best.pth.tar; the final test scores
# the base classes against the base half of the teacher's classes. KD_WEIGHT is set per dataset.
#   bash scripts/promptkd/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (PromptKD_TextRefiner | PromptKD), CFG, DATA, OUTPUT, SHOTS, TEACHER_DIR (see README).
exec bash "$(dirname "$0")/../protocol.sh" promptkd base2new_train "$@"
