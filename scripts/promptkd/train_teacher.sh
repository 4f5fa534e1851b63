#!/usr/bin/env bash
# Train a PromptKD teacher: PromptSRC with the teacher config (ViT-L/14) on DATASET's base classes
# (16 shots, seed SEED), written to $TEACHER_DIR/<DATASET.NAME>/VLPromptLearner/model-best.pth.tar,
# where the PromptKD launchers look. DATASET "xd": the cross-dataset teacher (ImageNet, all classes)
# at $TEACHER_DIR/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20.
#   bash scripts/promptkd/train_teacher.sh DATASET SEED [KEY VALUE ...]
# Environment: TEACHER_DIR (default ./teacher_model), TEACHER_OVERWRITE=1 (replace an existing
# teacher; default: refuse), TRAINER (PromptSRC), CFG, DATA, OUTPUT, SHOTS (see README).
exec bash "$(dirname "$0")/../protocol.sh" promptsrc train_teacher "$@"
