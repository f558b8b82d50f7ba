#!/usr/bin/env bash
# Remote inference at scale, by hand (not in CI): makes the MLServer venv as .ci/run does if it is
# missing, then runs the bench (benches/mlserver.rs) in release. Extra arguments go to cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="$HOME/.cache/spheroseg-venv-mlserver"
if ! cmp -s tests/ml/mlserver/requirements.txt "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/ml/mlserver/requirements.txt
  cp tests/ml/mlserver/requirements.txt "$venv/requirements.txt"
fi
SPHEROSEG_MLSERVER="$venv/bin/mlserver" cargo bench --bench mlserver "$@"
