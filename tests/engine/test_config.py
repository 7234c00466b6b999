"""Configs: YAML under CLI overrides, validated, unknown keys named with the nearest valid one."""

from pathlib import Path

import pytest
import yaml

from deepnc.engine.config import TrainConfig, load_config, parse_overrides, save_config
from deepnc.engine.recipes import list_configs

CONFIGS = sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml"))


def test_overrides_are_yaml_scalars():
    arguments = ["--lr", "0.05", "--amp", "--grad-clip=null", "--milestones", "[0.3, 0.6]"]
    assert parse_overrides(arguments) == {
        "lr": 0.05,
        "amp": True,
        "grad_clip": None,
        "milestones": [0.3, 0.6],
    }
    with pytest.raises(ValueError, match="expected --key value"):
        parse_overrides(["lr", "0.1"])


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nlr: 1\nhead_options: {tau: 0.2, num_subcentroids: 2}\n")
    config = load_config(path, ["--epochs", "2", "--head_options.tau", "0.05"])
    assert config.epochs == 2 and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.head_options == {"tau": 0.05, "num_subcentroids": 2}
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epoch": 3}, "unknown config key 'epoch'. Did you mean 'epochs'"),
        ({"head_options.taus": 1}, r"unknown head option 'taus'.*Did you mean 'tau'"),
        ({"head": "softmax"}, r"head must be one of \['dnc', 'linear'\]"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        (["--epochs"], r"epochs must be a positive integer, got True \(was --epochs given"),
        ({"image_size": 0}, "image_size must be a positive integer, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"lr": -1}, "lr must be a number >= 0"),
        ({"warmup_epochs": 20, "epochs": 10}, "warmup_epochs"),
        ({"milestones": [1.5]}, "milestones"),
        ({"head": "linear", "head_options": {"tau": 0.1}}, "head_options apply to head: dnc"),
        ({"other.key": 1}, "take dotted keys"),
    ],
)
def test_bad_configs_are_explained(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_a_yaml_that_is_not_a_mapping(tmp_path):
    (tmp_path / "c.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_are_valid(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig)
    assert set(yaml.safe_load(path.read_text())) <= set(config.to_dict())


def test_a_shipped_recipe_is_found_by_name_and_a_missing_one_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository: only the package's copy exists
    by_name = load_config("digits_resnet20")
    assert by_name.dataset == "digits" and by_name.model == "resnet20"
    assert load_config("configs/digits_resnet20.yaml") == by_name  # the README's spelling
    assert "fashion-mnist_resnet20" in list_configs()
    with pytest.raises(FileNotFoundError, match="Did you mean 'digits_resnet20'"):
        load_config("digits_resnet2")
