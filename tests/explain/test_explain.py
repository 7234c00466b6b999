"""Explanations: snapping finds real training images, evidence matches the model, reports render."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from deepnc.cli import main
from deepnc.engine import train
from deepnc.engine.config import load_config
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.explain import (
    apply_snap,
    embed_dataset,
    explain_batch,
    find_dnc_head,
    own_class_occupancy,
    snap_subcentroids,
    subcentroid_similarity,
)


def unit(rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_snap_distinct_and_nearest():
    subcentroids = unit([[[1, 0], [0.95, 0.05]], [[0, 1], [0, 0]]])  # class 1: one unseeded
    subcentroids[1, 1] = 0
    features = unit([[1, 0.01], [0.8, 0.2], [0, 1], [0.1, 1]])
    labels = torch.tensor([0, 0, 1, 1])
    nearest = snap_subcentroids(subcentroids, features, labels, distinct=False)
    assert nearest.indices.tolist() == [[0, 0], [2, -1]]  # both class-0 rows like sample 0
    distinct = snap_subcentroids(subcentroids, features, labels)
    assert distinct.indices.tolist() == [[0, 1], [2, -1]]
    assert torch.isnan(distinct.similarity[1, 1])
    expected = (subcentroids[0, 1] @ features[1]).item()
    assert distinct.similarity[0, 1].item() == pytest.approx(expected)


def test_snap_with_fewer_samples_than_subcentroids_and_absent_classes():
    subcentroids = unit([[[1, 0], [0, 1], [1, 1]], [[1, 0], [0, 1], [1, 1]]])
    features = unit([[1, 0.1], [0.1, 1]])
    result = snap_subcentroids(subcentroids, features, torch.tensor([0, 0]))
    assert sorted(result.indices[0].tolist()) == [-1, 0, 1]
    assert result.indices[1].tolist() == [-1, -1, -1]  # class 1 has no training sample


def test_apply_snap_uses_the_samples_and_keeps_unmatched():
    from deepnc import DNCHead

    head = DNCHead(2, 2, num_subcentroids=2, memory_size=0)
    head.bank.subcentroids.copy_(unit([[[1, 0], [0, 1]], [[-1, 0], [0, -1]]]))
    features = unit([[1, 0.2], [0.2, 1], [-1, 0.1]])
    result = snap_subcentroids(head.subcentroids, features, torch.tensor([0, 0, 1]))
    apply_snap(head, features, result)
    assert torch.allclose(head.subcentroids[0], features[:2])
    assert torch.allclose(head.subcentroids[1, 0], features[2])
    assert torch.equal(head.subcentroids[1, 1], unit([[0, -1]])[0])  # unmatched: kept


def test_occupancy_and_pairwise_similarity_by_hand():
    subcentroids = unit([[[1, 0], [0, 1]]])
    features = unit([[1, 0.1], [0.9, 0.3], [0.1, 1]])
    assert own_class_occupancy(
        subcentroids, features, torch.zeros(3, dtype=torch.long)
    ).tolist() == [[2, 1]]
    assert subcentroid_similarity(subcentroids).tolist() == [0.0]
    assert subcentroid_similarity(unit([[[1, 0], [1, 0]]])).tolist() == [pytest.approx(1.0)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DNC ResNet-20 trained for a few epochs on digits: a real checkpoint."""
    run = tmp_path_factory.mktemp("explain") / "run"
    config = load_config(
        None,
        {
            "dataset": "digits",
            "epochs": 4,
            "batch_size": 64,
            "lr": 0.05,
            "head_options": {"momentum_warmup": 10},
            "out_dir": str(run),
            "progress": False,
        },
    )
    train(config)
    return run


def test_evidence_matches_the_model(trained):
    model, checkpoint = load_trained_model(trained)
    data = load_checkpoint_dataset(checkpoint)
    images = torch.stack([data.test[i][0] for i in range(16)])
    train_embeddings = embed_dataset(model, data.train)
    head = find_dnc_head(model)
    exemplars = snap_subcentroids(
        head.subcentroids, train_embeddings.features, train_embeddings.labels
    )
    explanations = explain_batch(model, images, exemplars=exemplars, train=train_embeddings)
    with torch.no_grad():
        logits = model(images)
    for explanation, row in zip(explanations, logits, strict=True):
        assert explanation.predicted == int(row.argmax())
        assert explanation.score == pytest.approx(float(row.max()) * head.tau, abs=1e-5)
        scores = [evidence.score for evidence in explanation.classes]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3
        for evidence in explanation.classes:
            assert int(train_embeddings.labels[evidence.exemplar]) == evidence.label
        similarities = [n.similarity for n in explanation.neighbours]
        assert similarities == sorted(similarities, reverse=True) and len(similarities) == 5


def test_a_snapped_model_decides_by_training_images(trained, tmp_path, capsys):
    out = tmp_path / "snapped.safetensors"
    assert main(["snap", str(trained), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "before snapping" in printed and "after snapping" in printed
    model, checkpoint = load_trained_model(out)
    assert checkpoint.snapped and checkpoint.exemplars["dataset"] == "digits"
    assert checkpoint.training is None  # a snapped model is for use, not for resuming
    data = load_checkpoint_dataset(checkpoint)
    train_embeddings = embed_dataset(model, data.train)
    indices = torch.tensor(checkpoint.exemplars["indices"])
    head = find_dnc_head(model)
    assert torch.allclose(head.subcentroids, train_embeddings.features[indices], atol=1e-6)
    report = json.loads((tmp_path / "snapped_report.json").read_text())
    assert abs(report["top1_before"] - report["top1_after"]) < 0.2


def test_snapping_after_a_refit_snaps_the_re_estimated_sub_centroids(trained, tmp_path, capsys):
    out = tmp_path / "refit.safetensors"
    assert main(["snap", str(trained), "--out", str(out), "--device", "cpu", "--refit"]) == 0
    assert "after refitting" in capsys.readouterr().out
    model, checkpoint = load_trained_model(out)
    assert checkpoint.exemplars["refit"] and checkpoint.extra["snap_top1"]["refit"] is not None
    data = load_checkpoint_dataset(checkpoint)
    indices = torch.tensor(checkpoint.exemplars["indices"])
    features = embed_dataset(model, data.train).features
    assert torch.allclose(find_dnc_head(model).subcentroids, features[indices], atol=1e-6)


def test_explain_report_with_a_broken_file(trained, tmp_path, capsys):
    folder = tmp_path / "inputs"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).save(folder / "bright.png")
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "report"
    code = main(
        [
            "explain",
            str(trained),
            "--images",
            str(folder),
            "--test-samples",
            "3",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "broken.png" in printed and "explained 4 images" in printed
    page = (out / "index.html").read_text()
    assert "broken.png" in page and page.count('<div class="item">') == 4
    assert "http://" not in page and "https://" not in page  # readable offline
    assert (out / "gallery.png").stat().st_size > 1000 and (out / "prediction_3.png").exists()
    records = json.loads((out / "explanations.json").read_text())
    assert [r["name"] for r in records][:1] == ["bright.png"] and records[1]["true"] is not None


def test_explanations_need_a_dnc_head_and_the_right_data(trained, tmp_path, capsys):
    softmax = tmp_path / "softmax"
    config = load_config(
        None,
        {
            "dataset": "digits",
            "train_subset": 128,
            "epochs": 1,
            "batch_size": 64,
            "head": "linear",
            "out_dir": str(softmax),
            "progress": False,
        },
    )
    train(config)
    assert main(["snap", str(softmax)]) == 2
    assert "explanations need a DNC head" in capsys.readouterr().err
    assert main(["explain", str(trained), "--test-samples", "1", "--dataset", "fake"]) == 2
    assert "does not match the checkpoint" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"")
    assert main(["explain", str(trained), "--images", str(tmp_path / "bad.png")]) == 2
    assert "no image to explain" in capsys.readouterr().err
