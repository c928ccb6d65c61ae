#!/usr/bin/env bash
# Creates .venv with tfvae and its test dependencies, and installs the
# offline Fashion-MNIST (Debian's dataset-fashion-mnist) if it is missing.
# Needs: python3 (>= 3.10) with venv, and apt-get (root or sudo) for the data.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if command -v apt-get >/dev/null; then
    SUDO=""
    [ "$(id -u)" != 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "install.sh: no apt-get; Fashion-MNIST must come from --data_dir or a download." >&2
  fi
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -c "import tfvae, tensorflow as tf, keras; print('tfvae', tfvae.__version__, 'TF', tf.__version__, 'Keras', keras.__version__)"
