"""Segmentation streamed from files: every layout on synthetic data written to disk, the
joint pipeline keeping image and mask aligned, full-resolution evaluation, and memory
that does not grow with the set."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from deepnc.data import load_dataset
from deepnc.data.samplers import SeededSampler
from deepnc.data.seg_pipeline import SegmentationPipeline
from deepnc.engine.seg_evaluation import evaluate_segmentation
from deepnc.engine.seg_inference import InferenceOptions, infer, slide_logits
from deepnc.models.seg_models import create_segmentation_model
from helpers.seg_layout_data import (
    PIXEL_OF,
    SIZES,
    train_ids,
    write_ade20k,
    write_cityscapes,
    write_segfolder,
    write_voc,
)

WRITERS = {
    "segfolder": lambda root: write_segfolder(root, split=True),
    "ade20k": write_ade20k,
    "cityscapes": write_cityscapes,
    "voc": write_voc,
}
OPTIONS = {"segfolder": {"num_classes": 3}}
SMALL = {"crop_size": [32, 32], "scale": [96, 32], "test_scale": None, "photometric": False}


def _pixels_agree(image: torch.Tensor, mask: torch.Tensor, data) -> float:
    """Share of labelled pixels whose image value is the one drawn for their class."""
    mean, std = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
    values = ((image * std + mean) * 255)[0]
    expected = torch.tensor(PIXEL_OF, dtype=torch.float32)[mask.clamp(0, 2)]
    labelled = mask != 255
    return float(((values - expected).abs() < 25)[labelled].float().mean())


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_layout_loads_with_its_classes_and_stays_aligned(tmp_path, name):
    WRITERS[name](tmp_path)
    options = OPTIONS.get(name, {}) | SMALL
    data = load_dataset(name, root=str(tmp_path), **options)
    expected_classes = {"segfolder": 3, "ade20k": 150, "cityscapes": 19, "voc": 21}[name]
    assert data.task == "segmentation" and data.num_classes == expected_classes
    assert len(data.class_names) == expected_classes and data.ignore_index == 255
    for index in range(len(data.test)):  # full resolution: the file's own size
        image, mask = data.test[index]
        assert image.shape[-2:] == mask.shape and tuple(mask.shape) in SIZES
        assert set(mask.unique().tolist()) <= {0, 1, 2, 255}
        assert _pixels_agree(image, mask, data) > 0.98
    for index in range(len(data.train)):  # crops: the pipeline moved both together
        image, mask = data.train[index]
        assert image.shape[-2:] == mask.shape == (32, 32)
        if (mask != 255).any():
            assert _pixels_agree(image, mask, data) > 0.9


def test_the_stored_labels_become_train_ids(tmp_path):
    write_cityscapes(tmp_path / "c")
    write_ade20k(tmp_path / "a")
    for name, root in (("cityscapes", "c"), ("ade20k", "a")):
        data = load_dataset(name, root=str(tmp_path / root), **SMALL)
        for position, (image_path, _) in enumerate(data.test.pairs):
            index = int(re.search(r"_(\d{6,8})", image_path.name).group(1))  # the writer's
            expected = torch.from_numpy(train_ids(index, SIZES[index % 4])).long()
            assert torch.equal(data.test[position][1], expected)
    names = load_dataset("cityscapes", root=str(tmp_path / "c"), **SMALL).class_names
    assert names[:3] == ["road", "sidewalk", "building"]


def test_one_images_and_masks_tree_is_split_by_the_seed(tmp_path):
    write_segfolder(tmp_path, count=20)
    first = load_dataset("segfolder", root=str(tmp_path), num_classes=3, seed=0, **SMALL)
    again = load_dataset("segfolder", root=str(tmp_path), num_classes=3, seed=0, **SMALL)
    other = load_dataset("segfolder", root=str(tmp_path), num_classes=3, seed=1, **SMALL)
    assert len(first.train) == 16 and len(first.test) == 4
    assert first.test.pairs == again.test.pairs and first.test.pairs != other.test.pairs
    assert not set(first.train.pairs) & set(first.test.pairs)
    with pytest.raises(FileNotFoundError, match="images/ \\+ masks/"):
        load_dataset("segfolder", root=str(tmp_path / "nowhere"), num_classes=3)


def test_the_pipeline_pads_with_the_ignore_index_and_caps_the_largest_class():
    pipeline = SegmentationPipeline(crop_size=(16, 24), scale=None, ratio_range=(1, 1))
    image = torch.full((3, 10, 12), 200, dtype=torch.uint8)
    mask = torch.ones(10, 12, dtype=torch.long)
    cropped, padded = pipeline(image, mask, torch.Generator().manual_seed(0))
    assert cropped.shape == (3, 16, 24) and padded.shape == (16, 24)
    assert (padded[10:] == 255).all() and (padded[:, 12:] == 255).all()
    assert (padded[:10, :12] == 1).all()
    # A mask with one small class: capped crops find it far more often than plain ones.
    mask = torch.zeros(64, 64, dtype=torch.long)
    mask[:, 56:] = 1
    image = torch.zeros(1, 64, 64, dtype=torch.uint8)
    options = dict(crop_size=(16, 16), scale=None, ratio_range=(1, 1), photometric=False)
    shares = []
    for cap in (0.75, 1.0):
        pipeline = SegmentationPipeline(cat_max_ratio=cap, flip=False, **options)
        generator = torch.Generator().manual_seed(0)
        shares.append(
            np.mean([(pipeline(image, mask, generator)[1] == 1).any() for _ in range(200)])
        )
    assert shares[0] > 2 * shares[1]


def test_seeded_items_do_not_depend_on_the_worker_or_the_order(tmp_path):
    write_segfolder(tmp_path, count=12, split=True)
    data = load_dataset("segfolder", root=str(tmp_path), num_classes=3, **SMALL)
    sampler = SeededSampler(torch.utils.data.SequentialSampler(data.train), seed=3)
    keys = list(sampler)
    first = [data.train[key][1] for key in keys]
    again = [data.train[key][1] for key in reversed(keys)][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    sampler.set_epoch(1)
    assert not all(
        torch.equal(a, data.train[key][1]) for a, key in zip(first, sampler, strict=True)
    )


def test_sliding_windows_equal_the_whole_image_when_one_window_covers_it():
    model = create_segmentation_model("fcn_resnet20", num_classes=3, head="linear").eval()
    images = torch.randn(2, 3, 24, 40)
    with torch.no_grad():
        whole = model(images)["out"]
        covered = slide_logits(model, images, (32, 48), (16, 16))
        assert torch.equal(covered, whole)
        slid = infer(model, images, InferenceOptions("slide", (16, 16), (8, 8)), (24, 40))
    assert slid.shape == whole.shape and not torch.equal(slid, whole)


def test_inference_resizes_to_the_mask_and_averages_views():
    logits = torch.randn(1, 3, 8, 8)
    model = lambda images: {"out": torch.nn.functional.interpolate(logits, images.shape[-2:])}  # noqa: E731
    scores = infer(model, torch.zeros(1, 1, 8, 8), InferenceOptions(), (16, 12))
    assert scores.shape == (1, 3, 16, 12)
    views = InferenceOptions(scales=(1.0, 0.5), flip=True)
    averaged = infer(model, torch.zeros(1, 1, 8, 8), views, (8, 8))
    assert torch.allclose(averaged.exp().sum(1), torch.ones(1, 8, 8))  # log-probabilities
    with pytest.raises(ValueError, match="crop_size"):
        InferenceOptions(mode="slide")
    with pytest.raises(ValueError, match="unknown inference option"):
        InferenceOptions.from_config({"mdoe": "slide"})


def test_full_resolution_iou_equals_a_hand_computed_confusion():
    """Two images of different sizes; the 'model' predicts class 1 everywhere at a quarter
    of the resolution: every labelled pixel of class 0 is a miss."""
    masks = [torch.tensor([[0, 1], [255, 1]]), torch.tensor([[1, 1, 0]])]
    images = [torch.zeros(1, 1, 1), torch.zeros(1, 1, 2)]  # smaller than their masks

    class AlwaysOne(torch.nn.Module):
        def forward(self, batch):
            logits = torch.zeros(batch.shape[0], 2, *batch.shape[-2:])
            logits[:, 1] = 1
            return {"out": logits}

    model = AlwaysOne()

    result = evaluate_segmentation(
        model, [(images, masks)], num_classes=2, device=torch.device("cpu"), ignore_index=255
    )
    # truth 0: 2 pixels (both predicted 1); truth 1: 4 pixels (all right); 255 left out
    assert result.confusion.tolist() == [[0, 2], [0, 4]]
    assert result.per_class_iou.tolist() == pytest.approx([0.0, 4 / 6])
    assert result.miou == pytest.approx(1 / 3) and result.pixel_accuracy == pytest.approx(4 / 6)


MEMORY_PROBE = """
import json, resource, sys
from torch.utils.data import DataLoader
from deepnc.data import load_dataset
from deepnc.data.seg_files import collate_segmentation
data = load_dataset("segfolder", root=sys.argv[1], num_classes=3, image_size=256)
loader = DataLoader(data.train, batch_size=4, shuffle=True, collate_fn=collate_segmentation)
count = sum(images.shape[0] for images, _ in loader)
print(json.dumps({"items": count, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_the_set(tmp_path):
    from PIL import Image

    peaks = {}
    for count in (50, 200):
        root = tmp_path / str(count)
        for kind in ("images", "masks"):
            (root / kind).mkdir(parents=True)
        for index in range(count):
            labels = train_ids(index, (512, 512))
            Image.fromarray(labels * 60).save(root / "images" / f"{index}.png")
            Image.fromarray(labels).save(root / "masks" / f"{index}.png")
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(root)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        report = json.loads(done.stdout.splitlines()[-1])
        assert report["items"] == count - round(count * 0.2)  # the training split, whole
        peaks[count] = report["peak_kb"] / 1024
    # 150 more 512x512 RGB images and masks held in memory would be 150 MB more.
    assert peaks[200] - peaks[50] < 25, peaks


RECIPES = {
    "ade20k_fcn_resnet50": write_ade20k,
    "ade20k_deeplabv3_resnet101": write_ade20k,
    "cityscapes_fcn_resnet50": write_cityscapes,
    "cityscapes_deeplabv3_resnet101": write_cityscapes,
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_the_paper_recipes_run_a_few_steps_on_their_layout(tmp_path, recipe):
    """The GPU recipes as shipped, on tiny synthetic data in their layout: 3 iterations of
    batch 2 (the last epoch cut short), then full-resolution evaluation."""
    from deepnc.engine import train
    from deepnc.engine.config import load_config

    RECIPES[recipe](tmp_path / "data")
    overrides = {
        "data_root": str(tmp_path / "data"),
        "pretrained": False,  # the ImageNet weights need the internet
        "dataset_options.crop_size": [32, 32],
        "dataset_options.scale": [96, 32],
        "dataset_options.test_scale": [96, 32],
        "iterations": 3,
        "batch_size": 2,
        "workers": 1,  # persistent, seeded per item
        "progress": False,
        "out_dir": str(tmp_path / "run"),
    }
    config = load_config(recipe, overrides)
    if config.inference.get("mode") == "slide":
        config.inference = {**config.inference, "crop_size": [32, 32], "stride": [21, 21]}
    summary = train(config)
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert summary["epochs"] == 1 and len(rows) == 1  # 12 images / batch 2: one epoch
    assert 0 <= summary["test_miou"] <= 1 and rows[0]["lr"] < config.lr  # poly decays


def test_a_resumed_streamed_run_equals_an_uninterrupted_one(tmp_path):
    """Two decoding workers, persistent: the crops follow (seed, epoch, index), so a run
    stopped after an epoch and resumed ends bit for bit where one run ends."""
    from deepnc.engine import train
    from deepnc.engine.checkpoint import Checkpoint
    from deepnc.engine.config import load_config

    write_segfolder(tmp_path / "data", count=16)
    base = {
        "task": "segmentation",
        "dataset": "segfolder",
        "data_root": str(tmp_path / "data"),
        "dataset_options": {"num_classes": 3, **SMALL, "photometric": True},
        "model": "fcn_resnet20",
        "batch_size": 4,
        "workers": 2,
        "schedule": "constant",  # so that one epoch of two is one epoch of one
        "progress": False,
    }
    whole = load_config(None, {**base, "epochs": 2, "out_dir": str(tmp_path / "whole")})
    train(whole)
    first = load_config(None, {**base, "epochs": 1, "out_dir": str(tmp_path / "parts")})
    train(first)
    train(load_config(None, {**base, "epochs": 2, "out_dir": str(tmp_path / "parts")}), resume=True)
    expected = Checkpoint.load(tmp_path / "whole").model
    resumed = Checkpoint.load(tmp_path / "parts").model
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)


def test_one_folder_end_to_end_from_the_command_line(tmp_path, capsys):
    """Non-square images of several sizes in one images/ + masks/ tree: train (no manual
    split), eval at full resolution, predict masks at each image's size, explain."""
    from PIL import Image

    from deepnc.cli import main

    root = write_segfolder(tmp_path / "data", count=16)
    run = tmp_path / "run"
    arguments = ["train", "--task", "segmentation", "--dataset", "segfolder"]
    arguments += ["--data_root", str(root), "--dataset_options.num_classes", "3"]
    arguments += ["--dataset_options.crop_size", "[32, 32]", "--model", "fcn_resnet20"]
    arguments += ["--epochs", "1", "--batch_size", "4", "--out_dir", str(run)]
    assert main([*arguments, "--progress", "false"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    report = json.loads((run / "eval" / "eval.json").read_text())
    assert report["samples"] == 3  # 20% of 16 held out for evaluation
    assert set(report["per_class_iou"]) == {"class0", "class1", "class2"}
    image = next((root / "images").iterdir())
    masks = tmp_path / "masks"
    assert main(["predict", str(run), str(image), "--masks", str(masks)]) == 0
    written = Image.open(next(masks.iterdir()))
    assert written.size == Image.open(image).size
    explained = ["explain", str(run), "--test-samples", "3", "--pixel", "10", "10"]
    assert main([*explained, "--out", str(tmp_path / "x")]) == 0
    records = json.loads((tmp_path / "x" / "dense.json").read_text())
    assert len(records) == 3 and all("pixel_accuracy" in record for record in records)
    pixels = json.loads((tmp_path / "x" / "pixels.json").read_text())
    assert len(pixels) == 3 and all(len(p["training_images"]) == 4 for p in pixels)
    assert (tmp_path / "x" / "pixel_2.png").stat().st_size > 1000


def test_a_pixel_is_explained_by_the_training_regions_of_its_sub_centroid(tmp_path):
    """A trained DNC segmentation model: the deciding sub-centroid of a pixel is the one
    whose map is highest there, and the training images returned hold pixels that are
    nearest to it, best first."""
    from deepnc.engine import train
    from deepnc.engine.config import load_config
    from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
    from deepnc.explain.seg_evidence import explain_pixel

    write_segfolder(tmp_path / "data", count=12)
    config = {
        "task": "segmentation",
        "dataset": "segfolder",
        "data_root": str(tmp_path / "data"),
        "dataset_options": {"num_classes": 3, **SMALL},
        "model": "fcn_resnet20",
        "head_options": {"num_subcentroids": 3},
        "epochs": 2,
        "batch_size": 4,
        "progress": False,
        "out_dir": str(tmp_path / "run"),
    }
    train(load_config(None, config))
    model, checkpoint = load_trained_model(tmp_path / "run")
    data = load_checkpoint_dataset(checkpoint)
    image, _ = data.test[0]
    evidence = explain_pixel(model, image, (20, 5), data.train, top=3)
    assert evidence.map.shape == image.shape[-2:]
    assert abs(float(evidence.map[20, 5]) - evidence.similarity) < 1e-5
    similarities = [region.similarity for region in evidence.regions]
    assert len(similarities) == 3 and similarities == sorted(similarities, reverse=True)
    for region in evidence.regions:
        assert region.map.shape == region.region.shape
        assert abs(float(region.map.max()) - region.similarity) < 1e-6
    with pytest.raises(ValueError, match="outside"):
        explain_pixel(model, image, (500, 5), data.train)
