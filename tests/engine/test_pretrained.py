"""A model saved in the Hugging Face folder layout, offline: from_pretrained rebuilds the
same model, every command reads the folder, and the model card says what the model is."""

import json

import pytest
import torch

from deepnc.cli import main
from deepnc.engine import train
from deepnc.engine.config import load_config
from deepnc.engine.pretrained import from_pretrained, load_pretrained, save_pretrained
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained") / "run"
    config = {"dataset": "digits", "epochs": 1, "batch_size": 64, "train_subset": 200}
    train(load_config(None, {**config, "out_dir": str(root), "progress": False}))
    return root


def test_the_folder_rebuilds_the_same_model(run, tmp_path):
    folder = save_pretrained(run, tmp_path / "digits-dnc")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    model, checkpoint = from_pretrained(folder)
    original, saved = load_trained_model(run)
    assert checkpoint.class_names == saved.class_names and checkpoint.training is None
    images = torch.stack([load_checkpoint_dataset(saved).test[i][0] for i in range(4)])
    with torch.no_grad():
        torch.testing.assert_close(model(images), original(images))
    card = (folder / "README.md").read_text()
    assert "library_name: deepnc" in card and "test_top1" in card and "`9`" in card
    config = json.loads((folder / "config.json").read_text())
    assert config["class_names"] == saved.class_names
    with pytest.raises(FileExistsError, match="not empty"):
        save_pretrained(run, folder)


def test_every_command_reads_the_folder(run, tmp_path, capsys):
    folder = tmp_path / "exported"
    assert main(["export", str(run), "--format", "pretrained", "--out", str(folder)]) == 0
    assert load_pretrained(folder).num_classes == 10
    assert main(["eval", str(folder), "--out", str(tmp_path / "eval")]) == 0
    assert main(["eval", str(run), "--out", str(tmp_path / "eval_run")]) == 0
    scored = json.loads((tmp_path / "eval" / "eval.json").read_text())
    expected = json.loads((tmp_path / "eval_run" / "eval.json").read_text())
    for where in ("checkpoint", "picture"):  # the files differ, the scores may not
        scored.pop(where), expected.pop(where)
    assert scored == expected and 0 < scored["top1"] <= 1
    with pytest.raises(ValueError, match="not written by deepnc"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "config.json").write_text("{}")
        (tmp_path / "other" / "model.safetensors").write_bytes(b"")
        load_pretrained(tmp_path / "other")
