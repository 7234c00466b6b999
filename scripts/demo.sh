#!/usr/bin/env bash
# `make demo`: DNC against softmax on Fashion-MNIST (about 8 minutes on 2 CPU cores, install included).
# Installs the Debian dataset package where apt-get is usable; otherwise falls back to
# scikit-learn's digits, which always exist, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
FASHION=/usr/share/datasets/fashion-mnist

if [ ! -d "$FASHION" ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || true
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        (sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist) || true
    fi
fi

if [ -d "$FASHION" ]; then
    exec "$PY" -m deepnc compare --config configs/demo.yaml --seeds 0 1 "$@"
fi
echo "Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist);" \
     "running the demo on scikit-learn's 8x8 digits instead." >&2
exec "$PY" -m deepnc compare --config configs/demo.yaml --seeds 0 1 \
    --dataset digits --train_subset null --epochs 15 --batch_size 64 --lr 0.05 \
    --out_dir runs/demo-digits "$@"
