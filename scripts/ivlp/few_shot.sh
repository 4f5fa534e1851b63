#!/usr/bin/env bash
# Few-shot: train on SHOTS images per class of all classes of DATASET, test on all classes
# (IVLP's one release config, 20 epochs).
#   bash scripts/ivlp/few_shot.sh DATASET SHOTS SEED [KEY VALUE ...]
# Environment: TRAINER (IVLP), CFG, DATA, OUTPUT (see README).
exec bash "$(dirname "$0")/../protocol.sh" ivlp few_shot "$@"
