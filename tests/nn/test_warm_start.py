"""Warm start (balanced k-means before training), the momentum half-life, the validation split."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import deepnc
from deepnc.data import dataset_labels, load_dataset
from deepnc.engine.compare import compare
from deepnc.engine.config import load_config
from deepnc.engine.trainer import train
from deepnc.models.seg_models import create_segmentation_model
from deepnc.nn.bank import SubCentroidBank
from deepnc.nn.momentum import half_life_momentum


def two_blobs_per_class(num_classes=3, per_blob=40, dim=8, seed=0):
    """Each class is two tight blobs around known unit directions: ``(features, labels,
    centres (C, 2, D))``."""
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(num_classes, 2, dim, generator=generator), dim=-1)
    noise = 0.02 * torch.randn(num_classes, 2, per_blob, dim, generator=generator)
    features = F.normalize(centres.unsqueeze(2) + noise, dim=-1).reshape(-1, dim)
    labels = torch.arange(num_classes).repeat_interleave(2 * per_blob)
    return features, labels, centres


def test_bank_fit_finds_each_class_s_clusters_and_counts_no_momentum_update():
    features, labels, centres = two_blobs_per_class()
    bank = SubCentroidBank(3, 2, 8, momentum=0.999)
    bank.fit(features, labels, iterations=5)
    assert bank.all_seeded
    cosines = torch.einsum("ckd,cjd->ckj", bank.subcentroids, centres)  # (C, K, 2 blobs)
    assert (cosines.amax(dim=1) > 0.99).all()  # every blob has a sub-centroid on it
    assert bank.class_updates.tolist() == [0, 0, 0]  # a later momentum warm-up is untouched
    assert int(bank.assigned.sum()) == 0  # fitting rounds are not training statistics


def test_bank_fit_refits_only_the_classes_present():
    features, labels, _ = two_blobs_per_class()
    bank = SubCentroidBank(3, 2, 8)
    bank.fit(features, labels)
    before = bank.subcentroids.clone()
    keep = labels != 1
    bank.fit(-features[keep], labels[keep])  # classes 0 and 2 now point the other way
    assert torch.equal(bank.subcentroids[1], before[1])
    flipped = torch.einsum("kd,jd->kj", bank.subcentroids[0], before[0])
    assert (flipped.amin(dim=1) < -0.99).all()  # each opposite an old one


def test_head_fit_leaves_out_ignored_and_nonfinite_samples_and_fills_the_memory():
    features, labels, _ = two_blobs_per_class()
    head = deepnc.DNCHead(8, 3, num_subcentroids=2, memory_size=16, layer_norm=False)
    spoiled = features.clone()
    spoiled[0] = float("nan")
    labels = labels.clone()
    labels[1] = head.ignore_index
    head.fit(spoiled, labels)
    assert torch.isfinite(head.subcentroids).all()
    assert head.memory.count.tolist() == [16, 16, 16]
    head.eval()
    predicted = head(features).argmax(dim=1)
    assert (predicted == torch.arange(3).repeat_interleave(80)).float().mean() == 1.0


def small_model():
    model = deepnc.convert(torchvision.models.resnet18(num_classes=3))
    return model


def batches(count=4, size=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 3, 32, 32, generator=generator), torch.arange(size) % 3)
        for _ in range(count)
    ]


def test_warm_start_fits_the_heads_and_changes_nothing_else():
    model = small_model()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if "fc." not in k}
    report = deepnc.warm_start(model, batches(), samples_per_class=6)
    assert report.samples_per_class == [6, 6, 6] and report.batches == 2  # quota met: stopped
    head = deepnc.dnc_heads(model)[0]
    assert head.bank.all_seeded and torch.isfinite(head.subcentroids).all()
    after = model.state_dict()
    assert all(torch.equal(value, after[key]) for key, value in before.items())  # BN too
    assert not model.training  # the mode is restored


def test_warm_start_is_seeded_and_takes_every_sample_when_the_quota_is_large():
    first, second = small_model(), small_model()
    second.load_state_dict(first.state_dict())
    a = deepnc.warm_start(first, batches(), samples_per_class=100, seed=3)
    deepnc.warm_start(second, batches(), samples_per_class=100, seed=3)
    assert a.samples_per_class == [16, 16, 16] and a.batches == 4
    heads = [deepnc.dnc_heads(model)[0] for model in (first, second)]
    assert torch.equal(heads[0].subcentroids, heads[1].subcentroids)


def test_warm_start_samples_pixels_of_dense_heads_class_by_class():
    model = create_segmentation_model(
        "fcn_resnet20", num_classes=3, head="dnc", in_chans=1, head_options={"num_subcentroids": 2}
    )
    masks = torch.zeros(4, 16, 16, dtype=torch.long)
    masks[:, :, 8:] = 1
    masks[:, :4, :4] = 2
    masks[0, 0, 0] = 255  # an ignored pixel (the head's ignore_index is -100: out of range)
    data = [(torch.randn(4, 1, 16, 16), masks)]
    report = deepnc.warm_start(model, data, samples_per_class=3, samples_per_batch=3)
    assert report.samples_per_class == [3, 3, 3]  # pixels of the feature map, per class
    assert all(head.bank.all_seeded for head in deepnc.dnc_heads(model))


def test_warm_start_explains_its_misuse():
    with pytest.raises(ValueError, match="must contain a DNCHead"):
        deepnc.warm_start(nn.Linear(2, 2), batches())
    with pytest.raises(ValueError, match="samples_per_class must be >= 1"):
        deepnc.warm_start(small_model(), batches(), samples_per_class=0)
    with pytest.raises(ValueError, match="saw no batch"):
        deepnc.warm_start(small_model(), [])


@pytest.mark.parametrize(("half_life", "expected"), [(1.0, 0.5), (6.58, 0.9), (1e9, 0.999)])
def test_the_half_life_momentum_halves_a_weight_in_that_many_updates(half_life, expected):
    momentum = half_life_momentum(half_life)
    assert momentum == pytest.approx(expected, abs=1e-3)
    if momentum < 0.999:
        assert momentum**half_life == pytest.approx(0.5)
    with pytest.raises(ValueError, match="half_life must be"):
        half_life_momentum(0)


def test_the_bank_momentum_can_be_set_and_is_validated():
    bank = SubCentroidBank(2, 1, 2)
    bank.momentum = 0.5
    assert bank.momentum == 0.5
    with pytest.raises(ValueError, match="momentum"):
        bank.momentum = 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"head_init": "lazy"}, "head_init must be one of"),
        ({"head": "linear", "head_init": "warm"}, "head_init apply to head: dnc only"),
        ({"head": "linear", "subcentroid_half_life": 1.0}, "subcentroid_half_life apply"),
        ({"subcentroid_half_life": 0}, "subcentroid_half_life must be > 0"),
        ({"evaluate_on": "val"}, "needs a validation split: set validation_size"),
        ({"evaluate_on": "train"}, "evaluate_on must be one of"),
        ({"validation_size": 0}, "validation_size must be a positive integer"),
    ],
)
def test_bad_warm_start_and_validation_keys_are_explained(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_the_validation_split_is_held_out_balanced_and_unaugmented():
    splits = load_dataset("digits", validation_size=100, train_subset=500, seed=4)
    assert len(splits.val) == 100 and len(splits.train) == 500
    counts = dataset_labels(splits.val).bincount()
    assert counts.max() - counts.min() <= 1
    # the held-out images are not among the training images, and come unaugmented
    trained_on = {splits.train.dataset.indices[i] for i in splits.train.indices}
    assert not trained_on & set(splits.val.indices)
    assert splits.val.dataset.crop_padding == 0 and not splits.val.dataset.flip
    assert splits.train.dataset.dataset.flip or splits.train.dataset.dataset.crop_padding
    other_seed = load_dataset("digits", validation_size=100, seed=9)
    assert splits.val.indices == other_seed.val.indices  # one validation split for every seed
    with pytest.raises(ValueError, match="validation_size must be a positive int below"):
        load_dataset("digits", validation_size=100_000)


def tiny(tmp_path, **overrides):
    values = {
        "dataset": "digits",
        "train_subset": 256,
        "epochs": 1,
        "batch_size": 64,
        "lr": 0.05,
        "out_dir": str(tmp_path / "run"),
        "progress": False,
    }
    return load_config(None, {**values, **overrides})


def test_a_warm_started_run_with_a_half_life_is_scored_on_its_validation_split(tmp_path, caplog):
    config = tiny(tmp_path, head_init="warm", subcentroid_half_life=1.0, validation_size=200)
    config.evaluate_on = "val"
    with caplog.at_level("INFO", logger="deepnc"):
        summary = train(config)
    assert summary["evaluated_on"] == "val" and summary["val_size"] == 200
    assert 0 <= summary["val_top1"] <= 1 and "test_top1" not in summary
    # 4 steps an epoch, a class in a batch of 64 with odds 1 - 0.9^64: 3.995 updates
    assert f"sub-centroid momentum {0.5 ** (1 / (4 * (1 - 0.9**64))):.5f}" in caplog.text
    assert "warm start: fitted on" in caplog.text


def test_compare_gives_the_softmax_runs_no_dnc_only_keys(tmp_path):
    config = tiny(tmp_path, head_init="warm", subcentroid_half_life=1.0)
    config = dataclasses.replace(config, head_options={"tau": 0.2})
    summaries = compare(config, [0], tmp_path / "compare")
    by_head = {summary["head"]: summary["config"] for summary in summaries}
    assert by_head["dnc"]["head_init"] == "warm" and by_head["dnc"]["head_options"]
    assert by_head["linear"]["head_init"] == "first-batch"
    assert by_head["linear"]["subcentroid_half_life"] is None
    assert by_head["linear"]["head_options"] == {}
