#!/usr/bin/env bash
# MaPLe's name and arguments for base2new_train.sh (same step, same folders):
#   bash scripts/maple/base2new_train_maple.sh DATASET SEED [KEY VALUE ...]
# Runs MaPLe_TextRefiner unless TRAINER=MaPLe is set (MaPLe's own script always runs MaPLe).
exec bash "$(dirname "$0")/base2new_train.sh" "$@"
