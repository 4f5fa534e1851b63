#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train on ImageNet (or $SOURCE, e.g. testbed_shapes), all classes, 16 shots
# (IVLP's one release config: depth 9, 20 epochs).
#   bash scripts/ivlp/xd_train.sh SEED [KEY VALUE ...]
# Environment: TRAINER (IVLP), CFG, DATA, OUTPUT, SHOTS, SOURCE (see README).
exec bash "$(dirname "$0")/../protocol.sh" ivlp xd_train "$@"
