"""Export: a frozen DNC model gives the PyTorch model's predictions in TorchScript and ONNX."""

import json

import pytest
import torch

import deepnc
from deepnc import DNCHead
from deepnc.cli import main
from deepnc.engine import train
from deepnc.engine.config import load_config
from deepnc.export import FrozenDNCHead, export_model, freeze, verify_export
from deepnc.models import create_model
from deepnc.models.seg_models import create_segmentation_model


def _trained_head_model():
    torch.manual_seed(0)
    model = create_model(
        "resnet20", num_classes=4, in_chans=1, head_options={"num_subcentroids": 3}
    )
    model.fc.update(torch.randn(40, 64), torch.arange(4).repeat(10))
    return model.eval()


@pytest.mark.parametrize("projection", [None, 5])
def test_frozen_head_matches_the_head_on_vectors_and_maps(projection):
    head = DNCHead(6, 3, num_subcentroids=2, projection=projection).eval()
    head.update(torch.randn(30, 6), torch.arange(3).repeat(10))
    frozen = FrozenDNCHead.from_head(head)
    vectors, maps = torch.randn(5, 6), torch.randn(2, 6, 4, 4)
    assert torch.allclose(frozen(vectors), head(vectors), atol=1e-6)
    assert torch.allclose(frozen(maps), head(maps), atol=1e-6)
    assert frozen.weight.shape == (6, projection or 6)  # (C*K, E): one matmul and a max
    scripted = torch.jit.script(frozen)  # plain tensor code: even torch.jit.script takes it
    assert torch.allclose(scripted(vectors), head(vectors), atol=1e-6)


@pytest.mark.parametrize("format, suffix", [("torchscript", ".pt"), ("onnx", ".onnx")])
def test_exported_classifier_predicts_like_pytorch(tmp_path, format, suffix):
    model = _trained_head_model()
    path = export_model(model, torch.randn(2, 1, 28, 28), tmp_path / f"model{suffix}", format)
    check = verify_export(model, path, torch.randn(9, 1, 28, 28))  # another batch size
    assert check["prediction_agreement"] == 1.0 and check["max_abs_logit_diff"] < 1e-4


def test_exported_segmentation_model_predicts_like_pytorch(tmp_path):
    model = create_segmentation_model("fcn_resnet20", num_classes=3, in_chans=1).eval()
    model.classifier.update(torch.randn(30, 16), torch.arange(3).repeat(10))
    path = export_model(model, torch.randn(1, 1, 32, 32), tmp_path / "seg.onnx", "onnx")
    check = verify_export(model, path, torch.randn(2, 1, 32, 32))
    assert check["prediction_agreement"] == 1.0 and check["max_abs_logit_diff"] < 1e-4


def test_bad_export_arguments(tmp_path):
    model = _trained_head_model()
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(model, torch.randn(1, 1, 28, 28), tmp_path / "m", "tflite")
    with pytest.raises(ValueError, match="image batch"):
        export_model(model, torch.randn(1, 28, 28), tmp_path / "m.pt", "torchscript")
    with pytest.raises(ValueError, match=r"no DNC head|found none"):
        freeze(create_model("resnet20", num_classes=4, head="linear"))


def test_export_command(tmp_path, capsys):
    config = load_config(
        None,
        {
            "dataset": "digits",
            "train_subset": 128,
            "epochs": 1,
            "batch_size": 64,
            "out_dir": str(tmp_path / "run"),
            "progress": False,
        },
    )
    train(config)
    assert main(["export", str(tmp_path / "run"), "--format", "onnx", "--check", "32"]) == 0
    out = capsys.readouterr().out
    assert "predictions agree 100.00%" in out and (tmp_path / "run" / "model.onnx").exists()
    import onnx

    stored = {
        p.key: p.value for p in onnx.load(str(tmp_path / "run" / "model.onnx")).metadata_props
    }
    assert json.loads(stored["class_names"]) == [str(digit) for digit in range(10)]
    assert stored["image_size"] == "8" and stored["in_channels"] == "1"
    assert json.loads(stored["mean"]) and stored["deepnc_version"] == deepnc.__version__


def test_a_torchscript_file_carries_its_metadata(tmp_path):
    model = create_model("resnet20", num_classes=3, in_chans=1).eval()
    path = export_model(
        model, torch.randn(2, 1, 16, 16), tmp_path / "m.pt", "torchscript", metadata={"a": "b"}
    )
    extra = {"deepnc.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["deepnc.json"]) == {"a": "b"}
