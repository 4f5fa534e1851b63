#!/usr/bin/env bash
# Set up (or reuse) a local virtual environment in .venv, then run the demo or the tests.
#   bash bootstrap.sh demo [demo args]    # base-to-novel demo on the offline testbed (pretrained mini CLIP, shipped)
#   bash bootstrap.sh test [pytest args]  # the test suite (CPU)
#   bash bootstrap.sh sweep [sweep args]  # 2-seed base-to-novel sweep, CoOp vs CoOp_TextRefiner, synthetic data
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
stamp="$VENV/.textrefiner-installed"
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  echo "Installing textrefiner and its dependencies into $VENV (first run: a few minutes)"
  python -m pip install --quiet --upgrade pip
  # OpenAI's CLIP code imports pkg_resources, which setuptools >= 81 no longer ships.
  python -m pip install --quiet 'setuptools>=77.0.3,<81'
  python -m pip install --quiet -e '.[test]'
  touch "$stamp"
fi

case "${1:-}" in
  demo) shift; exec python -m textrefiner.demo "$@" ;;
  test) shift; exec python -m pytest -q tests "$@" ;;
  sweep) shift; exec python -m textrefiner.sweep --config configs/sweeps/base2new_synthetic.yaml "$@" ;;
  *) echo "usage: bash bootstrap.sh demo|test|sweep [extra arguments]" >&2; exit 2 ;;
esac
