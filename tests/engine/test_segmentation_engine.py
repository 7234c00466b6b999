"""Segmentation end to end: metrics over a whole split, training, resume, the CLI, transfer."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deepnc.engine.trainer as trainer_module
from deepnc.cli import main
from deepnc.data.in_memory import DEBIAN_FASHION_MNIST
from deepnc.engine import train
from deepnc.engine.checkpoint import load_checkpoint
from deepnc.engine.config import load_config
from deepnc.engine.seg_evaluation import evaluate_segmentation, iou_from_confusion
from deepnc.engine.transfer import transfer_backbone
from deepnc.models.seg_models import create_segmentation_model

needs_fashion = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist"
)
SCENES = {
    "task": "segmentation",
    "dataset": "fashion-scenes",
    "image_size": 32,
    "model": "fcn_resnet20",
    "dataset_options": {"train_size": 64, "val_size": 8, "test_size": 16},
    "epochs": 3,
    "batch_size": 16,
    "lr": 0.05,
    "progress": False,
}


def scenes(tmp_path, **overrides):
    return load_config(None, {**SCENES, "out_dir": str(tmp_path / "run"), **overrides})


def test_iou_from_confusion_leaves_absent_classes_out_of_the_mean():
    confusion = torch.tensor([[5, 1, 0], [2, 2, 0], [0, 0, 0]])
    iou, miou, accuracy = iou_from_confusion(confusion)
    assert iou[:2].tolist() == pytest.approx([5 / 8, 2 / 5]) and iou[2].isnan()
    assert miou == pytest.approx((5 / 8 + 2 / 5) / 2) and accuracy == pytest.approx(0.7)


class _Fixed(nn.Module):
    """Predicts class 1 on the left half of every image, class 0 elsewhere."""

    def forward(self, images):
        logits = torch.zeros(images.shape[0], 3, *images.shape[-2:])
        logits[:, 1, :, : images.shape[-1] // 2] = 1.0
        logits[:, 0, :, images.shape[-1] // 2 :] = 1.0
        return {"out": logits}


def test_metrics_are_computed_over_the_whole_split_and_skip_ignored_pixels():
    masks = torch.zeros(3, 2, 4, dtype=torch.long)
    masks[0, :, :2] = 1  # image 0: perfect
    masks[1] = 2  # image 1: every pixel wrong (class 2 never predicted)
    masks[2, :, :2] = 255  # image 2: left half ignored, right half right
    loader = DataLoader(TensorDataset(torch.zeros(3, 1, 2, 4), masks), batch_size=2)
    result = evaluate_segmentation(
        _Fixed(), loader, num_classes=3, device=torch.device("cpu"), ignore_index=255
    )
    # Pixels: class 0 true 8 (4 right), class 1 true 4 (4 right), class 2 true 8 (0 right);
    # predictions: class 0 8 + 4 = 12 pixels, class 1 4 + 4 = 8 pixels.
    assert result.confusion.tolist() == [[8, 0, 0], [0, 4, 0], [4, 4, 0]]
    assert result.pixel_accuracy == pytest.approx(12 / 20)
    assert result.per_class_iou.tolist() == pytest.approx([8 / 12, 4 / 8, 0.0])
    assert result.miou == pytest.approx((8 / 12 + 4 / 8 + 0) / 3)
    assert result.samples == 3


@needs_fashion
def test_segmentation_resume_reaches_the_numbers_of_an_uninterrupted_run(tmp_path, monkeypatch):
    # CPU: CUDA has no deterministic backward for bilinear upsampling
    straight = train(scenes(tmp_path / "a", device="cpu"))
    assert straight["task"] == "segmentation" and 0 < straight["test_miou"] <= 1
    real = trainer_module.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "train_one_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train(scenes(tmp_path / "b", device="cpu"))
    resumed = train(scenes(tmp_path / "b", device="cpu"), resume=True)
    assert resumed["test_miou"] == straight["test_miou"]
    a, _ = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert a["model.classifier.bank.subcentroids"].shape == (11, 10, 16)


@needs_fashion
def test_the_task_must_match_the_dataset(tmp_path):
    with pytest.raises(ValueError, match="pass --task segmentation"):
        train(
            load_config(
                None,
                {
                    **SCENES,
                    "task": "classification",
                    "model": "resnet20",
                    "out_dir": str(tmp_path / "x"),
                },
            )
        )
    with pytest.raises(ValueError, match="unknown model option 'aux'"):
        load_config(None, {"model_options": {"aux": True}})
    with pytest.raises(ValueError, match="init_from"):
        load_config(None, {"init_from": "somewhere"})


def _segfolder(root, count=12, size=16):
    """Two classes: a bright square (1) on a dark background (0); the border is unlabelled."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for split_dir in ("images", "masks"):
            (root / split / split_dir).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            top, left = rng.integers(0, size // 2, 2)
            mask = np.zeros((size, size), np.uint8)
            mask[top : top + size // 2, left : left + size // 2] = 1
            image = (mask * 200 + rng.integers(0, 40, (size, size))).astype(np.uint8)
            mask[0, :] = 255
            Image.fromarray(image).save(root / split / "images" / f"{index}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{index}.png")
    return root


def test_cli_trains_evaluates_and_explains_a_segfolder(tmp_path, capsys):
    root = _segfolder(tmp_path / "data")
    run = tmp_path / "run"
    arguments = [
        "train",
        "--task",
        "segmentation",
        "--dataset",
        "segfolder",
        "--data_root",
        str(root),
        "--dataset_options.num_classes",
        "2",
        "--image_size",
        "16",
        "--model",
        "fcn_resnet20",
        "--model_options.aux",
        "true",
        "--epochs",
        "2",
        "--batch_size",
        "4",
        "--lr",
        "0.05",
        "--out_dir",
        str(run),
        "--progress",
        "false",
    ]
    assert main(arguments) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "segmentation" and 0 <= printed["test_miou"] <= 1
    _, state = load_checkpoint(run / "checkpoint.safetensors")
    assert state["dataset"]["ignore_index"] == 255

    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "per-class IoU" in out and "class1" in out
    report = json.loads((run / "eval" / "eval.json").read_text())
    assert report["miou"] == pytest.approx(printed["test_miou"])
    assert len(report["per_class_iou"]) == 2
    assert (run / "eval" / "predictions.png").stat().st_size > 1000

    assert main(["explain", str(run), "--test-samples", "2", "--out", str(tmp_path / "x")]) == 0
    records = json.loads((tmp_path / "x" / "dense.json").read_text())
    assert len(records) == 2 and (tmp_path / "x" / "dense_1.png").stat().st_size > 1000
    for record in records:
        assert sum(map(sum, record["pixels_per_subcentroid"].values())) == 16 * 16


def _classifier_checkpoint(tmp_path, head="dnc", model="resnet20", head_options=None):
    config = load_config(
        None,
        {
            **({"head_options": head_options} if head_options else {}),
            "dataset": "digits",
            "train_subset": 128,
            "epochs": 1,
            "batch_size": 64,
            "model": model,
            "head": head,
            "out_dir": str(tmp_path / f"cls-{head}-{model}"),
            "progress": False,
        },
    )
    train(config)
    return tmp_path / f"cls-{head}-{model}" / "checkpoint.safetensors"


def test_transfer_loads_the_whole_backbone_and_reports_the_rest(tmp_path):
    checkpoint = _classifier_checkpoint(tmp_path)
    tensors, _ = load_checkpoint(checkpoint)
    model = create_segmentation_model("fcn_resnet20", num_classes=11, in_chans=1)
    report = transfer_backbone(model, checkpoint)
    backbone = [k for k in model.state_dict() if k.startswith("backbone.")]
    assert sorted(report.loaded) == sorted(backbone)
    for key in backbone:
        assert torch.equal(model.state_dict()[key], tensors["model." + key[len("backbone.") :]])
    assert "classifier.bank.subcentroids" in report.new and "fc.bank.subcentroids" in report.unused
    assert "normalisation was not loaded" in report.notes[0]  # 16 channels vs 64

    wide = create_segmentation_model(
        "fcn_resnet20", num_classes=11, in_chans=1, decoder_channels=64
    )
    report = transfer_backbone(wide, checkpoint)
    assert "classifier.norm.weight" in report.loaded and not report.notes
    assert torch.equal(wide.classifier.norm.weight, tensors["model.fc.norm.weight"])


def test_transfer_drops_a_projection_head_with_its_layer_norm(tmp_path):
    checkpoint = _classifier_checkpoint(tmp_path, head_options={"projection": 64})
    wide = create_segmentation_model(
        "fcn_resnet20", num_classes=11, in_chans=1, decoder_channels=64
    )
    before = wide.classifier.norm.weight.clone()
    report = transfer_backbone(wide, checkpoint)
    assert "classifier.norm.weight" in report.new and "fc.projection.weight" in report.unused
    assert "follows the classifier's projection" in report.notes[0]
    assert torch.equal(wide.classifier.norm.weight, before)
    assert all(key.startswith("backbone.") for key in report.loaded)


def test_transfer_refuses_a_backbone_that_does_not_match(tmp_path):
    checkpoint = _classifier_checkpoint(tmp_path)
    deeper = create_segmentation_model("fcn_resnet32", num_classes=11, in_chans=1)
    message = r"(?s)does not match.*tensors differ.*backbone.layers.3.conv1.weight: checkpoint"
    with pytest.raises(ValueError, match=message):
        transfer_backbone(deeper, checkpoint)
    rgb = create_segmentation_model("fcn_resnet20", num_classes=11, in_chans=3)
    with pytest.raises(
        ValueError,
        match=r"backbone.stem.0.weight: checkpoint \(16, 1, 3, 3\), model \(16, 3, 3, 3\)",
    ):
        transfer_backbone(rgb, checkpoint)


@needs_fashion
def test_init_from_in_a_training_run_and_compare(tmp_path, capsys):
    checkpoint = _classifier_checkpoint(tmp_path)
    summary = train(scenes(tmp_path, epochs=1, init_from=str(checkpoint)))
    transfer = json.loads((tmp_path / "run" / "transfer.json").read_text())
    assert transfer["source"] == str(checkpoint) and len(transfer["loaded"]) > 50
    assert summary["config"]["init_from"] == str(checkpoint)

    out = tmp_path / "cmp"
    arguments = [
        "compare",
        "--task",
        "segmentation",
        "--dataset",
        "fashion-scenes",
        "--image_size",
        "32",
        "--dataset_options.train_size",
        "32",
        "--dataset_options.test_size",
        "8",
        "--model",
        "fcn_resnet20",
        "--epochs",
        "1",
        "--batch_size",
        "16",
        "--progress",
        "false",
        "--seeds",
        "0",
        "--out",
        str(out),
    ]
    assert main(arguments) == 0
    table = (out / "compare.md").read_text()
    assert "mIoU (%)" in table and "| DNC |" in table and "| softmax |" in table


@needs_fashion
def test_torchrun_trains_a_segmentation_model_on_two_cpu_processes(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "deepnc",
            "train",
            "--task",
            "segmentation",
            "--dataset",
            "fashion-scenes",
            "--image_size",
            "32",
            "--dataset_options.train_size",
            "64",
            "--dataset_options.test_size",
            "16",
            "--model",
            "fcn_resnet20",
            "--epochs",
            "1",
            "--batch_size",
            "8",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--progress",
            "false",
            "--out_dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and 0 < summary["test_miou"] <= 1


class _Bias(nn.Module):
    """Logits (0, ln 3) at every pixel: class 1 everywhere, with known losses."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.0, float(np.log(3.0))]))

    def forward(self, images):
        return {"out": self.bias.view(1, 2, 1, 1).expand(images.shape[0], 2, *images.shape[-2:])}


def test_training_figures_leave_ignored_pixels_out():
    from deepnc.engine.loop import StepOptions, train_one_epoch

    masks = torch.ones(4, 2, 2, dtype=torch.long)
    masks[:, 0, 0] = 0  # a quarter of the pixels is class 0 (wrong)
    masks[:, 0, 1] = 255  # a quarter is ignored; the other half is class 1 (right)
    loader = DataLoader(TensorDataset(torch.zeros(4, 1, 2, 2), masks), batch_size=2)
    model = _Bias()
    stats = train_one_epoch(
        model,
        loader,
        torch.optim.SGD(model.parameters(), lr=0.0),
        device=torch.device("cpu"),
        options=StepOptions(ignore_index=255),
    )
    assert stats.accuracy == pytest.approx(2 / 3) and stats.samples == 4 and stats.steps == 2
    # cross-entropy: ln(4/3) for a class-1 pixel, ln(4) for a class-0 pixel
    assert stats.loss == pytest.approx((2 * np.log(4 / 3) + np.log(4)) / 3)
