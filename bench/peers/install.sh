#!/usr/bin/env bash
# Creates .venv-peers/ (PyTorch + pythae) for `python -m bench.peers` and
# `python -m bench.throughput --vs-peer`. The project itself never imports torch.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m venv .venv-peers
.venv-peers/bin/pip install --quiet --upgrade pip
.venv-peers/bin/pip install --quiet -r bench/peers/requirements.txt
.venv-peers/bin/python -c "import torch, pythae; print('peer venv ready: torch', torch.__version__)"
