#!/usr/bin/env bash
# Cross-dataset, as PromptKD's xd_train.sh: distil one student per target DATASET (caltech101 ... ucf101)
# on its unlabelled training images, from the ImageNet teacher in
# $TEACHER_DIR/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20; the final test scores the target.
#   bash scripts/promptkd/xd_train.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (PromptKD_TextRefiner | PromptKD), CFG, DATA, OUTPUT, SHOTS, TEACHER_DIR (see README).
exec bash "$(dirname "$0")/../protocol.sh" promptkd xd_train "$@"
