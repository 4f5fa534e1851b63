#!/usr/bin/env bash
# Few-shot: distil on SHOTS unlabelled images per class of all classes of DATASET, test on all classes.
#   bash scripts/promptkd/few_shot.sh DATASET SHOTS SEED [KEY VALUE ...]
# Environment: TRAINER (PromptKD_TextRefiner | PromptKD), CFG, DATA, OUTPUT, TEACHER_DIR (see README).
exec bash "$(dirname "$0")/../protocol.sh" promptkd few_shot "$@"
