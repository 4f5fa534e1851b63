#!/usr/bin/env bash
# Few-shot: train on SHOTS images per class of all classes of DATASET, test on all classes
# (PromptSRC's few-shot config: 50 epochs, GPA mean 30, std 30).
#   bash scripts/promptsrc/few_shot.sh DATASET SHOTS SEED [KEY VALUE ...]
# Environment: TRAINER (PromptSRC_TextRefiner | PromptSRC), CFG, DATA, OUTPUT (see README).
exec bash "$(dirname "$0")/../protocol.sh" promptsrc few_shot "$@"
