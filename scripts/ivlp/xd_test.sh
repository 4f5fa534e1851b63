#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 2: evaluate the xd_train.sh model on DATASET
# (caltech101 ... ucf101, or imagenetv2, imagenet_sketch, imagenet_a, imagenet_r; with
# SOURCE=testbed_shapes: testbed_shapes_sketch, testbed_shapes_clutter).
#   bash scripts/ivlp/xd_test.sh DATASET SEED [KEY VALUE ...]
# Environment: TRAINER (IVLP), CFG, DATA, OUTPUT, SHOTS, SOURCE (see README).
exec bash "$(dirname "$0")/../protocol.sh" ivlp xd_test "$@"
