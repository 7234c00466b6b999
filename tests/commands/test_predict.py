"""deepnc predict: labels for image files agree with the model, unreadable files are named
and skipped, rejection keeps the calibrated share of known images, snapped checkpoints
name their exemplars, segmentation checkpoints write masks."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from deepnc.cli import main
from deepnc.commands.predict import Predictor
from deepnc.commands.snap import snap_checkpoint
from deepnc.data.image_files import read_image
from deepnc.data.in_memory import DEBIAN_FASHION_MNIST
from deepnc.data.normalise import to_pixels
from deepnc.engine import train
from deepnc.engine.config import load_config
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.explain.embedding_cache import load_embeddings
from deepnc.explain.embeddings import embed_dataset, find_dnc_head
from deepnc.openset import calibrate_threshold, confidence_scores


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A DNC ResNet-20 trained briefly on digits, and a folder of five of its test images
    written as PNG files (plus one file that is not an image)."""
    root = tmp_path_factory.mktemp("predict")
    config = {"dataset": "digits", "epochs": 2, "batch_size": 64, "lr": 0.05}
    train(load_config(None, {**config, "out_dir": str(root / "run"), "progress": False}))
    _, checkpoint = load_trained_model(root / "run")
    data = load_checkpoint_dataset(checkpoint)
    folder = root / "images"
    folder.mkdir()
    for index in range(5):
        image, _ = data.test[index]
        Image.fromarray(to_pixels(image, data.mean, data.std)).save(folder / f"{index}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return root / "run", folder


def test_predictions_agree_with_the_model_and_a_broken_file_is_skipped(run, tmp_path, capsys):
    checkpoint, folder = run
    out = tmp_path / "predictions.jsonl"
    assert (
        main(["predict", str(checkpoint), str(folder), "--format", "jsonl", "--out", str(out)]) == 0
    )
    assert "broken.png: cannot read image" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["path"].rsplit("/", 1)[1] for row in rows] == [f"{i}.png" for i in range(5)]
    model, saved = load_trained_model(checkpoint)
    data = load_checkpoint_dataset(saved)
    images = torch.stack([data.test[i][0] for i in range(5)])
    with torch.no_grad():
        expected = model(images).argmax(dim=1).tolist()
    assert [row["label"] for row in rows] == expected  # the PNG round trip is lossless here
    for row in rows:
        assert row["class_name"] == saved.class_names[row["label"]]
        assert len(row["top"]) == 3 and row["top"][0][0] == row["class_name"]
        assert -1 <= row["score"] <= 1 and row["accepted"] is None and row["exemplar"] is None


def test_predict_fails_when_it_labels_nothing(run, tmp_path, capsys):
    checkpoint, folder = run
    missing, empty = tmp_path / "missing.png", tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(checkpoint), str(missing)]) == 2
    assert "no image could be labelled" in capsys.readouterr().err
    assert main(["predict", str(checkpoint), str(empty)]) == 2
    assert "no image file found there" in capsys.readouterr().err
    assert main(["predict", str(checkpoint), str(folder / "broken.png")]) == 2
    assert "all 1 skipped" in capsys.readouterr().err


def test_rejection_uses_the_threshold_of_the_test_split_and_marks_each_image(run):
    checkpoint, folder = run
    model, saved = load_trained_model(checkpoint)
    data = load_checkpoint_dataset(saved)
    with torch.no_grad():  # the known images' scores, computed here independently
        logits = model(torch.stack([image for image, _ in data.test]))
    known = confidence_scores(logits, "similarity", tau=find_dnc_head(model).tau)
    predictor = Predictor(checkpoint, reject_at=0.9)
    assert predictor.threshold == pytest.approx(calibrate_threshold(known, tpr=0.9))
    assert (known >= predictor.threshold).double().mean() >= 0.9
    predictions = [p for p in predictor.predict([folder]) if not isinstance(p, str)]
    assert [p.accepted for p in predictions] == [
        p.score >= predictor.threshold for p in predictions
    ]


def test_a_snapped_checkpoint_names_the_training_image_of_the_deciding_subcentroid(run, tmp_path):
    checkpoint, folder = run
    _, snapped = snap_checkpoint(checkpoint, tmp_path / "snapped.safetensors")
    predictions = [p for p in Predictor(snapped).predict([folder]) if not isinstance(p, str)]
    train_size = len(load_checkpoint_dataset(load_trained_model(snapped)[1]).train)
    assert all(0 <= p.exemplar < train_size for p in predictions)


def test_csv_is_the_default_output(run, capsys):
    checkpoint, folder = run
    assert main(["predict", str(checkpoint), str(folder / "0.png"), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("path,class_name,label,score") and len(lines) == 2
    assert lines[1].count(":") == 2  # two top classes, name:score each


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="needs dataset-fashion-mnist")
def test_a_segmentation_checkpoint_writes_a_mask_per_image(tmp_path, capsys):
    config = {
        "task": "segmentation",
        "dataset": "fashion-scenes",
        "image_size": 32,
        "model": "fcn_resnet20",
        "epochs": 1,
        "batch_size": 16,
        "progress": False,
        "dataset_options": {"train_size": 32, "val_size": 8, "test_size": 8},
        "out_dir": str(tmp_path / "run"),
    }
    train(load_config(None, config))
    wide, square = tmp_path / "wide.png", tmp_path / "square.png"
    Image.new("L", (48, 40), 128).save(wide)  # the model sees 32x32; the mask is 48x40
    Image.new("L", (32, 32), 128).save(square)
    predictor = Predictor(tmp_path / "run", masks_dir=tmp_path / "masks")
    first, second = predictor.predict([wide, square])
    mask = Image.open(first.mask)
    assert mask.size == (48, 40) and np.array(mask).max() < predictor.checkpoint.num_classes
    assert first.class_name in predictor.checkpoint.class_names
    # At the model's own size the mask is the argmax of its logits, pixel for pixel.
    image = read_image(square, predictor.checkpoint.dataset)
    with torch.no_grad():
        logits = predictor.model(image[None])["out"][0]
    assert np.array_equal(np.array(Image.open(second.mask)), logits.argmax(0).numpy())
    assert main(["snap", str(tmp_path / "run")]) == 2  # one line, no traceback
    assert "deepnc explain --pixel" in capsys.readouterr().err


def test_add_classes_from_folders_then_remove_them_by_name(run, tmp_path, capsys):
    checkpoint, folder = run
    new = tmp_path / "new"
    # eight-ish: three copies of one image, so that its mean is that image's embedding
    for name, indices in (("seven-ish", [0, 1]), ("eight-ish", [2, 2, 2])):
        (new / name).mkdir(parents=True)
        for copy, index in enumerate(indices):
            source = (folder / f"{index}.png").read_bytes()
            (new / name / f"{index}-{copy}.png").write_bytes(source)
    added = tmp_path / "added.safetensors"
    before = (checkpoint / "checkpoint.safetensors").read_bytes()
    assert main(["add-classes", str(checkpoint), str(new), "--out", str(added)]) == 0
    assert (checkpoint / "checkpoint.safetensors").read_bytes() == before  # untouched
    predictor = Predictor(added)
    names = predictor.checkpoint.class_names
    assert names[-2:] == ["eight-ish", "seven-ish"] and predictor.checkpoint.num_classes == 12
    labels = {p.class_name for p in predictor.predict([new / "eight-ish"])}
    assert labels == {"eight-ish"}  # at cosine 1 to its own sub-centroid
    removed = tmp_path / "removed.safetensors"
    assert main(["remove-classes", str(added), "seven-ish", "--out", str(removed)]) == 0
    assert Predictor(removed).checkpoint.class_names == names[:-1]
    assert main(["add-classes", str(checkpoint), str(new), "--out", str(checkpoint)]) == 2
    assert "is the checkpoint itself" in capsys.readouterr().err


def test_fit_makes_a_classifier_with_no_training_that_the_other_commands_accept(
    tmp_path, monkeypatch
):
    run = tmp_path / "fitted"
    overrides = ["--dataset", "digits", "--model", "resnet20", "--train_subset", "300"]
    assert main(["fit", *overrides, "--out_dir", str(run), "--progress", "false"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 0 and summary["test_top1"] > 0.3  # k-means of random features
    assert (run / "train_embeddings.safetensors").is_file()
    model, checkpoint = load_trained_model(run)
    assert checkpoint.training is None and checkpoint.extra["fitted"]["images"] == 300
    data = load_checkpoint_dataset(checkpoint)
    fresh = embed_dataset(model, data.train)  # the cache holds exactly these embeddings
    cached = load_embeddings(run, model)
    torch.testing.assert_close(cached[0], fresh.features)
    assert torch.equal(cached[1], fresh.labels)

    def no_embedding(*args, **kwargs):
        raise AssertionError("the training set was embedded again")

    monkeypatch.setattr("deepnc.explain.embeddings.embed_dataset", no_embedding)
    report, _ = snap_checkpoint(run)  # reads the cached embeddings
    assert report.train_size == 300
    explained = tmp_path / "report"
    assert main(["explain", str(run), "--test-samples", "2", "--out", str(explained)]) == 0
    assert (explained / "index.html").is_file()
    assert main(["fit", *overrides, "--out_dir", str(run), "--progress", "false"]) == 2


def test_fit_with_a_projection_learns_it_and_saves_it_in_the_run(run, tmp_path, capsys):
    _, folder = run
    fitted = tmp_path / "projected"
    overrides = ["--dataset", "digits", "--model", "resnet20", "--train_subset", "300"]
    arguments = ["--projection", "16", "--projection-epochs", "3", "--progress", "false"]
    assert main(["fit", *overrides, *arguments, "--out_dir", str(fitted)]) == 0
    model, checkpoint = load_trained_model(fitted)
    head = find_dnc_head(model)
    assert head.subcentroids.shape[-1] == 16 and checkpoint.config["head_options"] == {
        "projection": 16
    }
    losses = checkpoint.extra["fitted"]["projection"]["losses"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    data = load_checkpoint_dataset(checkpoint)
    with torch.no_grad():
        logits = model(torch.stack([data.test[i][0] for i in range(5)]))
    summary = json.loads((fitted / "summary.json").read_text())
    assert summary["test_top1"] > 0.3
    out = tmp_path / "labels.jsonl"
    capsys.readouterr()
    assert main(["predict", str(fitted), str(folder), "--format", "jsonl", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["label"] for row in rows] == logits.argmax(dim=1).tolist()


def test_the_embedding_cache_is_ignored_once_the_backbone_changes(tmp_path):
    from deepnc import DNCHead
    from deepnc.explain.embedding_cache import save_embeddings

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), DNCHead(4, 2, memory_size=0))
    save_embeddings(tmp_path, torch.randn(5, 4), torch.arange(5) % 2, model)
    assert load_embeddings(tmp_path, model) is not None
    model[1].bank.subcentroids.add_(1.0)  # the sub-centroids do not embed: still valid
    assert load_embeddings(tmp_path, model) is not None
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert load_embeddings(tmp_path, model) is None


def test_an_edited_checkpoint_is_a_model_like_any_other(run, tmp_path, capsys):
    """eval, predict --reject-at and export work on a checkpoint whose classes were edited:
    the training data is relabelled to its classes by name."""
    checkpoint, folder = run
    new = tmp_path / "new" / "extra"
    new.mkdir(parents=True)
    (new / "0.png").write_bytes((folder / "0.png").read_bytes())
    added, removed = tmp_path / "added.safetensors", tmp_path / "removed.safetensors"
    assert main(["add-classes", str(checkpoint), str(tmp_path / "new"), "--out", str(added)]) == 0
    assert main(["remove-classes", str(added), "3", "--out", str(removed)]) == 0
    capsys.readouterr()
    assert main(["eval", str(added), "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert len(report["per_class_accuracy"]) == 11 and math.isnan(
        report["per_class_accuracy"]["extra"]
    )
    with pytest.warns(UserWarning, match=r"no longer has the classes \['3'\]"):
        assert main(["eval", str(removed), "--out", str(tmp_path / "eval2")]) == 0
    assert main(["predict", str(added), str(folder), "--reject-at", "0.9"]) == 0
    assert "rejecting scores below" in capsys.readouterr().err
    out = tmp_path / "model.onnx"
    assert main(["export", str(added), "--out", str(out), "--check", "16"]) == 0
    assert "predictions agree 100.00%" in capsys.readouterr().out
