"""The package works outside the repository: its wheel, installed into a fresh venv that
sees the already installed dependencies (the wheel itself installed without them), runs
its commands from an empty folder, with the shipped recipes found by name."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path) -> str:
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_runs_the_commands_from_an_empty_folder(tmp_path):
    dist = tmp_path / "dist"
    wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    run([*wheel, "-q", "-w", str(dist), str(ROOT)], tmp_path)
    (built,) = dist.glob("deepnc-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    site = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
    ).strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(built)], tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    located = run([str(python), "-c", "import deepnc; print(deepnc.__file__)"], empty)
    assert located.startswith(site)  # the wheel's copy, not the checkout's
    deepnc = str(venv / "bin" / "deepnc")
    assert "fit" in run([deepnc, "--help"], empty)
    assert "digits_resnet20" in run([deepnc, "configs"], empty)
    tiny = ["--train_subset", "128", "--progress", "false"]
    run([deepnc, "fit", "--config", "digits_resnet20", *tiny, "--out_dir", "fitted"], empty)
    run(
        [
            deepnc,
            "train",
            "--config",
            "digits_resnet20",
            *tiny,
            "--epochs",
            "2",
            "--batch_size",
            "64",
            "--out_dir",
            "trained",
        ],
        empty,
    )
    assert (empty / "fitted" / "checkpoint.safetensors").is_file()
    assert (empty / "trained" / "summary.json").is_file()
