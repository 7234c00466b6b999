"""Training runs end to end on real (tiny) data; resume continues exactly; bad runs stop early."""

import dataclasses
import json
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import deepnc.engine.loop as loop_module
import deepnc.engine.trainer as trainer_module
from deepnc.engine import evaluate, train, train_one_epoch
from deepnc.engine.checkpoint import load_checkpoint
from deepnc.engine.config import load_config
from deepnc.engine.loop import autocast


def tiny(tmp_path, **overrides):
    values = {
        "dataset": "digits",
        "train_subset": 320,
        "epochs": 3,
        "batch_size": 64,
        "lr": 0.05,
        "warmup_epochs": 0.5,
        "out_dir": str(tmp_path / "run"),
        "progress": False,
    }
    return load_config(None, {**values, **overrides})


@pytest.mark.parametrize("head", ["dnc", "linear"])
def test_a_run_learns_and_writes_its_files(tmp_path, head):
    summary = train(tiny(tmp_path, head=head, epochs=4, train_subset=None))
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "checkpoint.json",
        "curves.png",
        "summary.json",
    }
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert summary["test_top1"] > 0.5  # 10 classes: chance is 0.1
    assert summary["epochs"] == 4 and summary["head"] == head
    tensors, state = load_checkpoint(run / "checkpoint.safetensors")
    assert state["epoch"] == 4 and state["dataset"]["num_classes"] == 10
    if head == "dnc":
        assert tensors["model.fc.bank.subcentroids"].shape == (10, 4, 64)
        assert "model.fc.memory.features" in tensors
        assert summary["parameters"]["subcentroids"] == 10 * 4 * 64


def _interrupt_at_epoch(monkeypatch, epoch):
    calls = {"n": 0}
    real = trainer_module.train_one_epoch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_one_epoch", interrupted)


@pytest.mark.parametrize("head", ["dnc", "linear"])
def test_resume_reaches_the_numbers_of_an_uninterrupted_run(tmp_path, monkeypatch, head):
    # deterministic: on CUDA the default kernels differ from run to run (a no-op on CPU)
    straight = train(tiny(tmp_path / "a", head=head, deterministic=True))
    with monkeypatch.context() as patch:
        _interrupt_at_epoch(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train(tiny(tmp_path / "b", head=head, deterministic=True))
    _, state = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.safetensors")
    assert state["epoch"] == 1
    resumed = train(tiny(tmp_path / "b", head=head, deterministic=True), resume=True)
    assert resumed["test_top1"] == straight["test_top1"]
    assert resumed["test_loss"] == straight["test_loss"]
    a, _ = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


def test_an_existing_run_is_not_overwritten(tmp_path):
    train(tiny(tmp_path, epochs=1))
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny(tmp_path, epochs=1))


def test_resume_refuses_another_recipe_or_dataset(tmp_path):
    train(tiny(tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"configuration changed \(lr: 0.05 -> 0.1"):
        train(tiny(tmp_path, epochs=2, lr=0.1), resume=True)
    with pytest.raises(ValueError, match="dataset: 'digits' -> 'fake'"):
        train(tiny(tmp_path, epochs=2, dataset="fake", train_subset=None), resume=True)
    assert train(tiny(tmp_path, epochs=2), resume=True)["epochs"] == 2  # more epochs is fine


def test_a_run_resumed_on_other_data_says_so_and_keeps_both(tmp_path, caplog):
    train(tiny(tmp_path, epochs=1))
    moved = str(tmp_path / "elsewhere")
    with caplog.at_level("WARNING", logger="deepnc"):
        summary = train(tiny(tmp_path, epochs=2, data_root=moved), resume=True)
    assert "resuming" in caplog.text and "on other data" in caplog.text
    record = [{"after_epoch": 1, "data_changes": {"data_root": [None, moved]}}]
    assert summary["resumed_on_other_data"] == record


def test_zero_length_epochs_are_caught_before_training(tmp_path):
    with pytest.raises(ValueError, match="an epoch would have no step"):
        train(tiny(tmp_path, train_subset=50, batch_size=64))


def test_evaluate_counts_exactly():
    logits = torch.tensor([[5.0, 0, 0], [0, 5, 0], [0, 0, 5], [0, 0, 5]])
    labels = torch.tensor([0, 1, 1, 2])
    model = torch.nn.Identity()
    loader = DataLoader(TensorDataset(logits, labels), batch_size=3)
    result = evaluate(model, loader, num_classes=3, device=torch.device("cpu"))
    assert result.top1 == 0.75 and result.samples == 4 and result.top5 == 1.0
    assert result.per_class.tolist() == [1.0, 0.5, 1.0]
    assert result.confusion.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert result.predicted.tolist() == [1, 1, 2] and result.true.tolist() == [1, 2, 1]


def test_evaluate_keeps_o_of_c_counts_and_no_confusion_matrix_for_many_classes(monkeypatch):
    monkeypatch.setattr(loop_module, "CONFUSION_MAX_CLASSES", 2)
    logits = torch.tensor([[5.0, 0, 0], [0, 5, 0], [0, 0, 5], [0, 0, 5]])
    loader = DataLoader(TensorDataset(logits, torch.tensor([0, 1, 1, 2])), batch_size=3)
    result = evaluate(torch.nn.Identity(), loader, num_classes=3, device=torch.device("cpu"))
    assert result.confusion is None and result.top1 == 0.75
    assert result.per_class.tolist() == [1.0, 0.5, 1.0] and result.predicted.tolist() == [1, 1, 2]


def test_a_diverging_loss_stops_training():
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    loader = DataLoader(TensorDataset(torch.randn(4, 2), torch.tensor([0, 1, 0, 1])), batch_size=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="loss is nan at step 0"):
        train_one_epoch(model, loader, optimizer, device=torch.device("cpu"))


def test_amp_runs_the_backbone_in_bf16_on_cpu_and_keeps_the_head_fp32(tmp_path):
    cpu = torch.device("cpu")
    conv = torch.nn.Conv2d(1, 2, 3)
    with autocast(cpu, True):
        assert conv(torch.randn(1, 1, 5, 5)).dtype == torch.bfloat16
    with autocast(cpu, False):
        assert conv(torch.randn(1, 1, 5, 5)).dtype == torch.float32
    summary = train(tiny(tmp_path, epochs=4, amp=True, train_subset=None))
    assert math.isfinite(summary["test_loss"]) and summary["test_top1"] > 0.5  # chance: 0.1
    tensors, _ = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    subcentroids = tensors["model.fc.bank.subcentroids"]
    assert subcentroids.dtype == torch.float32
    assert torch.allclose(subcentroids.norm(dim=-1), torch.ones(10, 4), atol=1e-5)


def test_device_selection(monkeypatch):
    from deepnc.engine.runtime import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto", local_rank=1) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device("auto", local_rank=0) == torch.device("cuda", 0)
    assert select_device("cuda", local_rank=0) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="has 1 GPU\\(s\\): start at most"):
        select_device("auto", local_rank=1)


def test_a_compiled_run_trains_like_the_eager_one(tmp_path):
    """``compile: true`` (inductor, on the CPU): the same recipe reaches the same numbers up
    to float rounding, and compile does not make the two runs count as different recipes."""
    from deepnc.engine.compare import find_finished_run

    # One epoch of three steps (seeding, then the one-graph steady state): over more steps a
    # tiny net turns rounding differences into flipped near-tie decisions (which samples
    # count as correct for the update) and the two runs drift apart like two seeds.
    options = dict(train_subset=192, test_subset=64, epochs=1, batch_size=64, warmup_epochs=0)
    eager = train(tiny(tmp_path / "eager", **options))
    compiled_config = tiny(tmp_path / "compiled", compile=True, **options)
    compiled = train(compiled_config)
    assert compiled["config"]["compile"] is True  # saved with the run
    assert abs(compiled["test_top1"] - eager["test_top1"]) <= 2 / 64  # a sample or two
    # The training loss is the figure both runs compute on the same batches; the test loss
    # of a near-chance net after three steps magnifies any flipped near-tie.
    train_losses = [
        json.loads((tmp_path / name / "run" / "metrics.jsonl").read_text())["train_loss"]
        for name in ("eager", "compiled")
    ]
    assert math.isclose(*train_losses, rel_tol=1e-2)
    assert find_finished_run(compiled_config, [tmp_path / "eager"]) is not None


def test_a_finished_run_is_found_whether_its_paths_were_relative_or_absolute(tmp_path, monkeypatch):
    """``init_from`` and ``data_root`` count as the files they name: a run saved with
    absolute paths is the recipe of the same command given relative ones, and another
    file is another recipe."""
    from deepnc.engine.compare import find_finished_run

    monkeypatch.chdir(tmp_path)
    recipe = {"task": "segmentation", "dataset": "fashion-scenes", "model": "fcn_resnet20"}
    saved = load_config(
        None,
        {
            **recipe,
            "init_from": str(tmp_path / "cls" / "checkpoint.safetensors"),
            "data_root": str(tmp_path / "data"),
            "out_dir": str(tmp_path / "run"),
        },
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"config": saved.to_dict()}))
    relative = dataclasses.replace(
        saved, init_from="cls/checkpoint.safetensors", data_root="data", out_dir="elsewhere"
    )
    assert find_finished_run(relative, [tmp_path]) == tmp_path / "run"
    other = dataclasses.replace(relative, init_from="cls2/checkpoint.safetensors")
    assert find_finished_run(other, [tmp_path]) is None


def test_a_run_that_puts_everything_in_one_class_says_so(tmp_path, monkeypatch, caplog):
    """A collapsed model (one class takes every prediction) is named with what to try."""
    real = trainer_module.evaluate_split

    def collapsed(*args, **kwargs):
        result = real(*args, **kwargs)
        predicted = torch.zeros_like(result.predicted)
        predicted[3] = result.samples  # every image predicted as class 3
        return dataclasses.replace(result, predicted=predicted)

    monkeypatch.setattr(trainer_module, "evaluate_split", collapsed)
    with caplog.at_level("WARNING", logger="deepnc"):
        summary = train(tiny(tmp_path, epochs=1, train_subset=128, test_subset=64))
        off = train(tiny(tmp_path / "off", epochs=1, train_subset=128, precise_bn=None))
    assert len(summary["warnings"]) == 1 and "one class" in summary["warnings"][0]
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "100% of the test predictions are class '3'" in warning
    assert "--refresh end" in summary["warnings"][0]
    assert "--precise_bn" not in summary["warnings"][0]  # on by default
    assert "--precise_bn 1000" in off["warnings"][0]
