#!/usr/bin/env bash
# The test command. On a fresh machine it creates .venv, installs what both tiers need, prepares the
# default model (idempotent), then runs pytest. Arguments go to pytest: `bash tests/run.sh -m "not reference"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10) and "Python 3.10 or newer is needed")'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip_install() {  # pip's own failure still fails the script (pipefail); only a local-index warning is hidden
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
}
# torch first and pinned by a constraint: the only CPU build on these machines (others pull CUDA).
pip_install -c tests/constraints.txt -r tests/requirements.txt
pip_install --no-deps optimum-intel==2.2.0  # its torchvision requirement would break transformers' imports
.venv/bin/python -c 'import torch, transformers, optimum.intel, openvino_genai'  # fail here, not mid-suite
export HF_HUB_OFFLINE=1
.venv/bin/python scripts/prepare_default_model.py
exec .venv/bin/python -m pytest "$@"
