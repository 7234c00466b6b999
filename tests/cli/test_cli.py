"""The ``deepnc`` command end to end on tiny real data, including a killed and resumed run."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import deepnc
from deepnc.cli import main

TINY = ["--dataset", "digits", "--train_subset", "320", "--batch_size", "64", "--lr", "0.05"]
TINY += ["--progress", "false"]


def run_cli(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "deepnc", *arguments], capture_output=True, text=True, timeout=300
    )


def test_train_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out_dir", str(run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["epochs"] == 2 and 0 <= printed["test_top1"] <= 1
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "top-5" in out and "digits test: 360 images" in out
    report = json.loads((run / "eval" / "eval.json").read_text())
    assert report["top1"] == pytest.approx(printed["test_top1"])
    assert len(report["per_class_accuracy"]) == 10 and len(report["confusion"]) == 10
    assert (run / "eval" / "confusion.png").stat().st_size > 1000


def test_eval_refuses_a_dataset_of_another_shape(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", *TINY, "--epochs", "1", "--out_dir", str(run)])
    assert main(["eval", str(run), "--dataset", "fake"]) == 2
    assert "does not match the checkpoint" in capsys.readouterr().err


def test_config_errors_name_the_nearest_key(capsys):
    assert main(["train", "--epoch", "3"]) == 2
    assert "Did you mean 'epochs'" in capsys.readouterr().err
    assert main(["train", "--dataset", "cifar11", "--out_dir", "unused"]) == 2
    assert "valid names" in capsys.readouterr().err
    assert main(["eval", "no/such/checkpoint"]) == 2


def test_compare_writes_a_table_and_reuses_finished_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    arguments = ["compare", *TINY, "--epochs", "1", "--seeds", "0", "1", "--out", str(out)]
    assert main(arguments) == 0
    table = (out / "compare.md").read_text()
    assert "| DNC |" in table and "| softmax |" in table and "step / softmax" in table
    report = json.loads((out / "compare.json").read_text())
    assert len(report["runs"]) == 4 and {r["head"] for r in report["rows"]} == {"dnc", "linear"}
    dnc, linear = (next(r for r in report["rows"] if r["head"] == h) for h in ("dnc", "linear"))
    assert dnc["trainable_parameters"] != linear["trainable_parameters"]
    assert dnc["seeds"] == [0, 1] and len(dnc["top1"]) == 2
    capsys.readouterr()
    mtime = (out / "dnc-seed0" / "summary.json").stat().st_mtime
    assert main(arguments) == 0  # finished runs are reused, not retrained
    assert (out / "dnc-seed0" / "summary.json").stat().st_mtime == mtime


def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    arguments = ["train", *TINY, "--epochs", "6", "--threads", "1"]
    straight = run_cli(*arguments, "--out_dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "deepnc", *arguments, "--out_dir", str(killed_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not (killed_dir / "checkpoint.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved = json.loads((killed_dir / "checkpoint.json").read_text())["epoch"]
    assert 1 <= saved < 6
    resumed = run_cli(*arguments, "--out_dir", str(killed_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["test_top1"] == json.loads(straight.stdout)["test_top1"]


def test_torchrun_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "deepnc",
            "train",
            *TINY,
            "--batch_size",
            "32",
            "--epochs",
            "2",
            "--threads",
            "1",
            "--out_dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 2
    assert summary["test_top1"] > 0.1
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2  # written once, by rank 0


def test_module_entry_point_help():
    completed = run_cli("--help")
    assert (
        completed.returncode == 0 and "train" in completed.stdout and "compare" in completed.stdout
    )


def test_configs_lists_the_shipped_recipes_and_prints_one(capsys):
    assert main(["configs"]) == 0
    listed = capsys.readouterr().out
    assert "fashion-mnist_resnet20" in listed and "demo" in listed
    assert main(["configs", "demo"]) == 0
    assert "train_subset: 12000" in capsys.readouterr().out


def test_help_and_version_answer_without_importing_torch():
    """Parsing imports nothing heavy: ``deepnc --help``, ``train --help`` and ``configs`` answer at
    once (the import set is checked, not the time)."""
    script = (
        "import sys\n"
        "from deepnc.cli import main\n"
        "for argv in (['--help'], ['--version'], ['predict', '--help'], ['train', '--help'],\n"
        "             ['configs']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as done:\n"
        "        assert done.code == 0, argv\n"
        "    else:\n"
        "        assert argv == ['configs'], argv\n"
        "heavy = sorted({'torch', 'torchvision', 'timm', 'torchmetrics'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"deepnc {deepnc.__version__}" in done.stdout
    assert "COMMAND" in done.stdout and "--top-k" in done.stdout


def test_the_export_formats_the_parser_offers_are_the_exporter_s():
    from deepnc.cli.export_command import FORMATS
    from deepnc.export import EXPORT_FORMATS

    assert FORMATS == EXPORT_FORMATS


def test_train_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    assert "config keys and their defaults" in shown and "precise_bn=1000" in shown


def test_mistakes_on_the_command_line_get_one_clear_line(capsys, tmp_path):
    cases = [
        (["train", "--num_subcentroids", "0"], "--head_options.num_subcentroids VALUE"),
        (["train", "--epochs"], "was --epochs given without a value"),
        (["fit", "--resume"], "fit takes no --resume"),
        (["predict", str(tmp_path), str(tmp_path), "--reject-at", "1.5"], "a share in (0, 1]"),
        (["predict", str(tmp_path), str(tmp_path), "--topk", "2"], "Did you mean '--top-k'?"),
        (["eval", str(tmp_path), "--batch_size", "0"], "argument --batch-size: must be an int"),
        (["export", str(tmp_path), "--check", "-1"], "argument --check: must be an int >= 0"),
        (["snap", str(tmp_path), "extra"], "unexpected argument 'extra'"),
    ]
    for argv, message in cases:
        try:
            status = main(argv)
        except SystemExit as stop:  # argparse's own errors: usage, then the one line
            status = stop.code
        assert status == 2, argv
        assert message in capsys.readouterr().err, argv


def test_either_spelling_of_a_flag_is_the_same_flag():
    from deepnc.cli import _one_spelling

    parsers = {"eval": argparse.ArgumentParser()}
    parsers["eval"].add_argument("--data-root")
    argv = ["eval", "run", "--data_root", "d", "--data_root=e", "--other_key", "1"]
    spelled = _one_spelling(argv, parsers)
    assert spelled == ["eval", "run", "--data-root", "d", "--data-root=e", "--other_key", "1"]


def test_an_interrupted_train_says_what_was_saved(tmp_path, monkeypatch, capsys):
    import deepnc.engine.trainer as trainer_module

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "train_one_epoch", interrupt)
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out_dir", str(run)]) == 130
    assert "no checkpoint was saved yet" in capsys.readouterr().err
