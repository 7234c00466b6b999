"""A checkpoint is a model you can hand over: with its training folder moved away, the
commands that only use the model work from the checkpoint (a stored calibration, checks
on given images), and those that need the data say so and take --data-root."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from deepnc.cli import main
from deepnc.engine.checkpoint import Checkpoint


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """A DNC classifier fitted on an image folder of digits that was then moved away, a
    folder of new-class images and a folder of images to label."""
    root = tmp_path_factory.mktemp("moved")
    digits = load_digits()
    for index in range(300):
        folder = root / "data" / str(digits.target[index])
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray((digits.images[index] * 16).astype(np.uint8))
        image.resize((16, 16)).save(folder / f"{index}.png")
    pictures = [(300, "new/eleven"), (301, "new/eleven"), (302, "query"), (303, "more/twelve")]
    for index, folder in pictures:
        (root / folder).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray((digits.images[index] * 16).astype(np.uint8))
        image.resize((16, 16)).save(root / folder / f"{index}.png")
    fit = ["fit", "--dataset", "imagefolder", "--data_root", str(root / "data")]
    fit += ["--model", "resnet20", "--image_size", "16", "--progress", "false"]
    assert main([*fit, "--out_dir", str(root / "run")]) == 0
    assert main(["calibrate", str(root / "run")]) == 0
    shutil.move(root / "data", root / "elsewhere")
    return root


def test_the_model_alone_predicts_rejects_and_exports(moved, capsys):
    run, query = str(moved / "run"), str(moved / "query")
    capsys.readouterr()
    assert main(["predict", run, query, "--reject-at", "0.9", "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    assert "stored" in captured.err and '"accepted": ' in captured.out
    label = json.loads(captured.out.splitlines()[0])["class_name"]
    onnx = str(moved / "model.onnx")
    assert main(["export", run, "--out", onnx, "--check-images", query]) == 0
    assert "checked on 1 given images: predictions agree 100.00%" in capsys.readouterr().out
    alone = subprocess.run(
        [sys.executable, "-c", ONNX_ALONE, onnx, next((moved / "query").iterdir()).as_posix()],
        capture_output=True,
        text=True,
    )
    assert alone.returncode == 0, alone.stderr[-2000:]
    found = json.loads(alone.stdout)
    assert found["label"] == label and found["deepnc_imported"] is False
    assert set(found["thresholds"]) == {"0.9", "0.95", "0.99"}


# Labels an image with the ONNX file alone: onnxruntime, numpy and PIL, no deepnc.
ONNX_ALONE = """
import json, sys
import numpy as np, onnxruntime
from PIL import Image
session = onnxruntime.InferenceSession(sys.argv[1])
facts = session.get_modelmeta().custom_metadata_map
size, channels = int(facts["image_size"]), int(facts["in_channels"])
image = Image.open(sys.argv[2]).convert("L" if channels == 1 else "RGB")
image = image.resize((size, size), Image.BILINEAR) if image.size != (size, size) else image
pixels = np.asarray(image, dtype=np.float32).reshape(size, size, channels) / 255
pixels = (pixels - np.array(json.loads(facts["mean"]))) / np.array(json.loads(facts["std"]))
batch = pixels.transpose(2, 0, 1)[None].astype(np.float32)
logits = session.run(None, {"images": batch})[0]
names = json.loads(facts["class_names"])
print(json.dumps({
    "label": names[int(logits.argmax())],
    "thresholds": json.loads(facts["rejection_thresholds"]),
    "deepnc_imported": "deepnc" in sys.modules,
}))
"""


def test_what_needs_the_data_asks_for_it_and_takes_data_root(moved, capsys):
    run, elsewhere = str(moved / "run"), str(moved / "elsewhere")
    assert main(["snap", run, "--out", str(moved / "snapped.safetensors")]) == 2
    assert "give --data-root WHERE_IT_IS_NOW" in capsys.readouterr().err
    assert main(["eval", run, "--data-root", elsewhere, "--out", str(moved / "eval")]) == 0
    out = str(moved / "report")
    arguments = ["explain", run, "--images", str(moved / "query"), "--out", out]
    assert main([*arguments, "--data-root", elsewhere]) == 0
    assert json.loads((moved / "report" / "explanations.json").read_text())


def test_an_edited_checkpoint_drops_its_calibration_and_is_calibrated_again(moved, capsys):
    run, elsewhere = str(moved / "run"), str(moved / "elsewhere")
    added = str(moved / "added.safetensors")
    assert main(["add-classes", run, str(moved / "new"), "--out", added]) == 0
    assert "calibration" not in Checkpoint.load(added).extra
    query = str(moved / "query")
    assert main(["predict", added, query, "--reject-at", "0.9"]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["predict", added, query, "--reject-at", "0.9", "--data-root", elsewhere]) == 0
    assert "computed now" in capsys.readouterr().err
    assert main(["calibrate", added, "--data-root", elsewhere]) == 0
    calibration = Checkpoint.load(added).extra["calibration"]
    assert calibration["class_names"][-1] == "eleven" and calibration["split"] == "test"
    assert calibration["scores"] == sorted(calibration["scores"], reverse=True)
    assert main(["predict", added, query, "--reject-at", "0.9"]) == 0
    out = str(moved / "added_report")
    assert main(["explain", added, "--images", query, "--out", out, "--data-root", elsewhere]) == 0
    twice = str(moved / "twice.safetensors")
    assert main(["add-classes", added, str(moved / "new"), "--out", twice]) == 2  # a name clash
    assert "eleven" in capsys.readouterr().err
    assert main(["add-classes", added, str(moved / "more"), "--out", twice]) == 0
    assert Checkpoint.load(twice).class_names[-2:] == ["eleven", "twelve"]
    assert main(["export", added, "--out", str(moved / "added.onnx"), "--check", "0"]) == 0
    assert "not checked (--check 0)" in capsys.readouterr().out


def test_a_snapped_sub_centroid_names_its_training_file(moved, capsys):
    snapped = str(moved / "named.safetensors")
    elsewhere = str(moved / "elsewhere")
    assert main(["snap", str(moved / "run"), "--out", snapped, "--data-root", elsewhere]) == 0
    exemplars = Checkpoint.load(snapped).exemplars
    for row, files in zip(exemplars["indices"], exemplars["files"], strict=True):
        for index, file in zip(row, files, strict=True):
            assert (file is None) == (index < 0)
            assert file is None or (moved / "elsewhere" / file).is_file()  # relative to root
    capsys.readouterr()
    assert main(["predict", snapped, str(moved / "query"), "--format", "jsonl"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    label = row["label"]
    assert row["exemplar_file"] in exemplars["files"][label]
    assert (
        exemplars["indices"][label][exemplars["files"][label].index(row["exemplar_file"])]
        == (row["exemplar"])
    )
    out = moved / "named_report"
    arguments = ["explain", snapped, "--images", str(moved / "query"), "--out", str(out)]
    assert main([*arguments, "--data-root", elsewhere]) == 0
    record = json.loads((out / "explanations.json").read_text())[0]
    assert record["exemplar_files"][0] in exemplars["files"][record["classes"][0]["label"]]
    assert record["exemplar_files"][0] in (out / "index.html").read_text()
