"""Precise BatchNorm and the refresh: what evaluation uses is recomputed from the final
weights, identically wherever it runs, and nothing else moves."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import deepnc
from deepnc.engine.build import build_data
from deepnc.engine.config import load_config
from deepnc.engine.precise_bn import batchnorm_layers, recompute_batchnorm
from deepnc.engine.restore import load_trained_model
from deepnc.engine.runtime import epoch_seed
from deepnc.engine.trainer import train


def test_the_statistics_are_the_plain_average_over_the_sampled_items():
    layer = nn.BatchNorm1d(3)
    layer.running_mean.fill_(5.0)  # stale
    model = nn.Sequential(layer).eval()
    items = torch.randn(40, 3) * 2 + 1
    data = TensorDataset(items, torch.zeros(40, dtype=torch.long))
    recompute_batchnorm(model, data, samples=40, batch_size=40, seed=0, device=torch.device("cpu"))
    torch.testing.assert_close(layer.running_mean, items.mean(0))
    torch.testing.assert_close(layer.running_var, items.var(0))  # unbiased, one batch
    assert layer.momentum == 0.1 and not model.training  # put back as they were


def test_a_sample_is_seeded_and_the_heads_do_not_move():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), deepnc.DNCHead(6, 3))
    head = model[2]
    head(torch.randn(30, 6), torch.arange(30) % 3)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    data = TensorDataset(torch.randn(100, 4), torch.zeros(100, dtype=torch.long))
    statistics = []
    for _ in range(2):
        recompute_batchnorm(
            model, data, samples=32, batch_size=8, seed=3, device=torch.device("cpu")
        )
        statistics.append(model[1].running_mean.clone())
    torch.testing.assert_close(statistics[0], statistics[1])
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in before.items())
    assert batchnorm_layers(model) == [model[1]]
    with pytest.raises(ValueError, match="samples must be >= 1"):
        recompute_batchnorm(model, data, samples=0, batch_size=8, seed=0, device="cpu")


def test_a_refresh_fits_the_subcentroids_on_eval_mode_features():
    """A BatchNorm whose running statistics differ from any batch's: the refreshed
    sub-centroids are those a fit on the eval-mode features gives."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), deepnc.DNCHead(6, 2))
    model[1].running_mean.fill_(3.0)
    batches = [(torch.randn(16, 4), torch.arange(16) % 2) for _ in range(2)]
    expected = deepnc.DNCHead(6, 2)
    expected.load_state_dict(model[2].state_dict())
    deepnc.warm_start(model, batches, samples_per_class=16, mode="eval")
    with torch.no_grad():
        model.eval()
        features = torch.cat([model[1](model[0](images)) for images, _ in batches])
    expected.fit(features, torch.cat([labels for _, labels in batches]))
    torch.testing.assert_close(model[2].subcentroids, expected.subcentroids)
    assert torch.equal(model[1].running_mean, torch.full((6,), 3.0))
    with pytest.raises(ValueError, match="mode must be 'train' or 'eval'"):
        deepnc.warm_start(model, batches, mode="test")


@pytest.mark.parametrize("head", ["dnc", "linear"])
def test_a_run_with_precise_bn_and_a_refresh_resumes_bit_for_bit(tmp_path, head, caplog):
    """The saved BatchNorm statistics are those of the final weights over the seeded
    sample (recomputing them changes nothing), the DNC heads were refitted, and a run cut
    after its first epoch resumes to the same numbers."""
    values = {
        "dataset": "digits",
        "train_subset": 192,
        "test_subset": 64,
        "epochs": 2,
        "batch_size": 64,
        "progress": False,
        "head": head,
        "precise_bn": 64,
        "augment": False,  # the sample's images are then the same on every pass
        **({"refresh": "eval", "warm_start_samples": 8} if head == "dnc" else {}),
    }
    with caplog.at_level("INFO", logger="deepnc"):
        whole = train(load_config(None, {**values, "out_dir": str(tmp_path / "whole")}))
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert logged.count("precise BN: statistics over 64 images") == 2  # one per evaluation
    assert logged.count("refresh: sub-centroids refitted") == (2 if head == "dnc" else 0)
    model, checkpoint = load_trained_model(tmp_path / "whole")
    saved = [layer.running_mean.clone() for layer in batchnorm_layers(model)]
    data = build_data(load_config(None, checkpoint.config))
    recompute_batchnorm(
        model, data.train, samples=64, batch_size=512, seed=epoch_seed(0, 1, 0), device="cpu"
    )
    for before, layer in zip(saved, batchnorm_layers(model), strict=True):
        torch.testing.assert_close(layer.running_mean, before)
    cut = load_config(None, {**values, "out_dir": str(tmp_path / "cut")})

    def stop():  # after the first epoch's checkpoint
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cut, epoch_hooks=(stop,))
    resumed = train(cut, resume=True)
    assert resumed["test_top1"] == whole["test_top1"]
    assert resumed["test_loss"] == whole["test_loss"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"precise_bn": 0}, "precise_bn must be a positive integer"),
        ({"refresh": "sometimes"}, "refresh must be one of"),
        ({"head": "linear", "refresh": "end"}, "refresh apply to head: dnc only"),
    ],
)
def test_bad_precise_bn_and_refresh_keys_are_explained(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides).validate()
