#!/usr/bin/env bash
# MaPLe's name and arguments for xd_train.sh: the source dataset comes first, as in MaPLe's
# script, and must be imagenet (the cross-dataset protocol trains on ImageNet).
#   bash scripts/maple/xd_train_maple.sh imagenet SEED [KEY VALUE ...]
# Runs MaPLe_TextRefiner unless TRAINER=MaPLe is set (MaPLe's own script always runs MaPLe).
if [ "$#" -lt 2 ] || [ "$1" != imagenet ]; then
    echo "usage: bash scripts/maple/xd_train_maple.sh imagenet SEED [KEY VALUE ...]" >&2
    echo "(the cross-dataset protocol trains on imagenet)" >&2
    exit 2
fi
shift
exec bash "$(dirname "$0")/xd_train.sh" "$@"
