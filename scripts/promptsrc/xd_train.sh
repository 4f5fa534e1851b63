#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train on ImageNet (or $SOURCE, e.g. testbed_shapes), all classes, 16 shots
# (PromptSRC's cross-dataset config: prompt depth 3, 20 epochs, GPA mean 6, std 10).
#   bash scripts/promptsrc/xd_train.sh SEED [KEY VALUE ...]
# Environment: TRAINER (PromptSRC_TextRefiner | PromptSRC), CFG, DATA, OUTPUT, SHOTS, SOURCE (see README).
exec bash "$(dirname "$0")/../protocol.sh" promptsrc xd_train "$@"
