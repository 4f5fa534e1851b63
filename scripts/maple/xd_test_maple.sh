#!/usr/bin/env bash
# MaPLe's name and arguments for xd_test.sh (same step, same folders):
#   bash scripts/maple/xd_test_maple.sh DATASET SEED [KEY VALUE ...]
# Runs MaPLe_TextRefiner unless TRAINER=MaPLe is set (MaPLe's own script always runs MaPLe).
exec bash "$(dirname "$0")/xd_test.sh" "$@"
