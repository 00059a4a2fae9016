#!/usr/bin/env bash
# Runs a command inside the project's virtualenv, creating it first if needed.
#
#   bash tools/with_venv.sh python -m tools.quickstart
#   bash tools/with_venv.sh python -m pytest -q tests
#
# The virtualenv lives outside the clone, keyed by a hash of the requirement
# files, so every clone and CI run with the same requirements reuses it and a
# change of requirements (or a fresh machine) installs everything from scratch.
# Override the location with P2SD_VENV_ROOT. An interrupted install is redone:
# the venv only counts as ready once its `.complete` marker is written.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${P2SD_VENV_ROOT:-$HOME/.cache/pix2seq-d/venvs}"
key="$(cat "$repo/requirements.txt" "$repo/requirements-test.txt" | sha256sum | cut -c1-16)"
venv="$root/$key"
python="${PYTHON:-python3}"
if [ ! -f "$venv/.complete" ]; then
  echo "[with_venv] creating $venv (about 5 minutes, 3.4 GB, once per requirements change)" >&2
  rm -rf "$venv"
  mkdir -p "$root"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -r "$repo/requirements.txt" -r "$repo/requirements-test.txt" >&2
  touch "$venv/.complete"
fi
cd "$repo"
export PATH="$venv/bin:$PATH"
# TF_CPP_MIN_LOG_LEVEL: the programs set it by --verbosity (tools/console.py).
exec "$@"
