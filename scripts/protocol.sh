#!/usr/bin/env bash
# Shared by the launchers of every host: run one protocol step with this checkout's code.
#   bash scripts/protocol.sh HOST STEP ARG... [KEY VALUE ...]
# The logic lives in textrefiner/protocols/ (see its launch.py for the environment variables).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m textrefiner.protocols.launch "$@"
