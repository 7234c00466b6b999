"""Checkpoints: safetensors + JSON, atomic, no code run on load, optimiser state round-trips."""

import json

import pytest
import torch
from safetensors.torch import save_file

from deepnc.engine.checkpoint import (
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
