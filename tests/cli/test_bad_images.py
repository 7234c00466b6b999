"""A bad image in a class folder: the run refuses before its first step with one line
naming the file, or leaves it out and says so (skip_unreadable); never a traceback."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from deepnc.cli import main
from deepnc.utils.errors import UnreadableImageError, one_line


@pytest.fixture
def folder(tmp_path):
    """Two classes of 12 noise images, one of them a truncated PNG."""
    generator = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(12):
            pixels = generator.integers(0, 255, (16, 16), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{index}.png")
    buffer = io.BytesIO()
    Image.fromarray(generator.integers(0, 255, (16, 16), dtype=np.uint8)).save(buffer, "PNG")
    (tmp_path / "data" / "b" / "truncated.png").write_bytes(buffer.getvalue()[:120])
    return tmp_path


def arguments(root, *more):
    return [
        "train", "--dataset", "imagefolder", "--data_root", str(root / "data"),
        "--model", "resnet20", "--image_size", "16", "--epochs", "1", "--batch_size", "8",
        "--progress", "false", "--out_dir", str(root / "run"), *more,
    ]  # fmt: skip


def test_a_truncated_image_stops_the_run_before_it_starts(folder, capsys):
    assert main(arguments(folder)) == 2
    error = capsys.readouterr().err
    assert "truncated.png" in error and "skip_unreadable: true" in error
    assert "Traceback" not in error and not (folder / "run" / "checkpoint.safetensors").exists()


def test_skip_unreadable_leaves_it_out_and_records_it(folder):
    assert main(arguments(folder, "--skip_unreadable", "true")) == 0
    summary = json.loads((folder / "run" / "summary.json").read_text())
    assert len(summary["unreadable_images"]) == 1
    assert "truncated.png" in summary["unreadable_images"][0]


def test_unverified_a_bad_image_ends_the_run_with_one_line(folder, capsys):
    assert main(arguments(folder, "--verify_images", "false", "--epochs", "2")) == 2
    error = capsys.readouterr().err
    assert "cannot read image" in error and "truncated.png" in error
    assert "Traceback" not in error


def test_an_error_from_a_loader_worker_reads_as_its_own_message():
    wrapped = UnreadableImageError(
        "Caught UnreadableImageError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\n  File ...\n"
        "deepnc.utils.errors.UnreadableImageError: cannot read image x.png: truncated"
    )
    assert one_line(wrapped) == "cannot read image x.png: truncated"
    assert one_line(ValueError("two\nlines")) == "two\nlines"
