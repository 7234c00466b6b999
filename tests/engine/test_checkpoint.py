"""Checkpoints: safetensors + JSON, atomic, no code run on load, optimiser state round-trips."""

import json

import pytest
import torch
from safetensors.torch import save_file

from deepnc.engine.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    TrainingState,
    load_checkpoint,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    save_checkpoint,
)


def test_round_trip_and_readable_sidecar(tmp_path):
    tensors = {"model.w": torch.randn(3, 4), "model.b": torch.arange(3)}
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"epoch": 2, "config": {"lr": 0.1}})
    loaded, state = load_checkpoint(tmp_path / "c.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert state["epoch"] == 2 and state["config"] == {"lr": 0.1}
    assert json.loads((tmp_path / "c.json").read_text())["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_shared_storage_is_saved(tmp_path):
    base = torch.randn(4, 4)
    save_checkpoint(tmp_path / "c.safetensors", {"a": base, "b": base[0]}, {})
    loaded, _ = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(loaded["b"], base[0])


def test_a_failed_write_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.ones(2)}, {"epoch": 1})
    with pytest.raises(TypeError):
        save_checkpoint(path, {"w": torch.zeros(2)}, {"epoch": 2, "bad": object()})
    loaded, state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(loaded["w"], torch.ones(2))
    assert len(list(tmp_path.iterdir())) == 2  # the checkpoint and its .json, nothing else


def test_foreign_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors")
    save_file({"w": torch.ones(1)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="not a deepnc checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_optimizer_state_round_trip(name):
    model = torch.nn.Linear(3, 2)
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "adamw": torch.optim.AdamW}[
        name
    ]
    optimizer = make(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    tensors, state = optimizer_state_to_tensors(optimizer)
    state = json.loads(json.dumps(state))
    restored = make(model.parameters())
    restored.load_state_dict(optimizer_state_from_tensors(tensors, state))
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(
            torch.as_tensor(restored.state_dict()["state"][0][key]), torch.as_tensor(value)
        )


def _trained_parts():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


DATASET = {"name": "toy", "task": "classification", "num_classes": 2, "class_names": ["a", "b"]}


def test_a_typed_checkpoint_round_trips_with_its_training_state(tmp_path):
    model, optimizer, scheduler = _trained_parts()
    written = Checkpoint(
        model=dict(model.state_dict()),
        config={"lr": 0.1},
        dataset=DATASET,
        epoch=3,
        training=TrainingState.capture(optimizer, scheduler),
    ).save(tmp_path)  # a run folder: the file is its checkpoint.safetensors
    assert written == tmp_path / CHECKPOINT_NAME
    loaded = Checkpoint.load(tmp_path)
    assert loaded.epoch == 3 and loaded.class_names == ["a", "b"] and loaded.num_classes == 2
    assert loaded.task == "classification" and not loaded.snapped and loaded.deepnc_version
    assert all(torch.equal(loaded.model[k], v) for k, v in model.state_dict().items())
    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh_scheduler = torch.optim.lr_scheduler.StepLR(fresh_optimizer, 1)
    loaded.training.restore(fresh_optimizer, fresh_scheduler)
    assert fresh_scheduler.last_epoch == 1
    assert torch.equal(
        fresh_optimizer.state_dict()["state"][0]["momentum_buffer"],
        optimizer.state_dict()["state"][0]["momentum_buffer"],
    )


def test_a_checkpoint_for_use_has_no_training_state_and_keeps_its_exemplars(tmp_path):
    model, optimizer, scheduler = _trained_parts()
    trained = Checkpoint(
        dict(model.state_dict()),
        {"lr": 0.1},
        DATASET,
        training=TrainingState.capture(optimizer, scheduler),
    )
    trained.for_use(exemplars={"indices": [[0], [1]]}).save(tmp_path / "snapped.safetensors")
    _, raw = load_checkpoint(tmp_path / "snapped.safetensors")
    assert raw["snapped"] and "optimizer" not in raw and "scheduler" not in raw
    loaded = Checkpoint.load(tmp_path / "snapped.safetensors")
    assert loaded.training is None and loaded.snapped and loaded.exemplars["indices"] == [[0], [1]]


def test_a_deepnc_0_1_checkpoint_loads(tmp_path):
    """0.1 wrote the same file with untyped state (no deepnc_version, optimizer JSON)."""
    model, optimizer, scheduler = _trained_parts()
    tensors, optimizer_json = optimizer_state_to_tensors(optimizer)
    tensors |= {f"model.{k}": v for k, v in model.state_dict().items()}
    state = {
        "epoch": 2,
        "config": {"lr": 0.1},
        "dataset": DATASET,
        "optimizer": optimizer_json,
        "scheduler": scheduler.state_dict(),
        "scaler": None,
        "torch_version": "2.5.0",
        "snap_top1": {"before": 0.5},
    }
    save_checkpoint(tmp_path / "old.safetensors", tensors, state)
    loaded = Checkpoint.load(tmp_path / "old.safetensors")
    assert loaded.epoch == 2 and loaded.torch_version == "2.5.0" and loaded.deepnc_version is None
    assert loaded.training is not None and loaded.extra == {"snap_top1": {"before": 0.5}}
    assert set(loaded.model) == set(model.state_dict())


def test_a_deepnc_file_without_a_model_description_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(1)}, {"epoch": 1})
    with pytest.raises(ValueError, match="without a model's config and dataset"):
        Checkpoint.load(tmp_path / "c.safetensors")
