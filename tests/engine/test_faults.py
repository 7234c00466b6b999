"""Faults, injected: a run killed or preempted inside an epoch, a disk that fills during a
save, a truncated newest checkpoint, a DDP worker killed under torchrun --max-restarts.
Each time nothing is lost beyond the checkpoint interval, and the run ends bit for bit
where an uninterrupted one ends (CPU)."""

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import deepnc.engine.checkpoint as checkpoint_module
from deepnc.engine import train
from deepnc.engine.checkpoint import Checkpoint
from deepnc.engine.config import load_config
from deepnc.engine.run_checkpoints import EXIT_PREEMPTED, PreemptionWatch, StepCheckpoints
from deepnc.engine.runtime import join_process_group
from deepnc.testing.torchrun import group_workers, launched, one_round

# 320 digits in batches of 32: 10 steps an epoch, 3 epochs, a checkpoint every 4 steps
TINY = ["--dataset", "digits", "--train_subset", "320", "--batch_size", "32"]
TINY += ["--epochs", "3", "--lr", "0.05", "--progress", "false", "--workers", "0"]
EVERY = ["--checkpoint_every_steps", "4", "--checkpoint_every_minutes", "null"]


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "deepnc", "train", *TINY, "--out_dir", str(out), *extra]


def _same_model(first: Path, second: Path) -> bool:
    one, two = Checkpoint.load(first).model, Checkpoint.load(second).model
    return one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run (no checkpoint inside its epochs)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(_command(out), check=True, capture_output=True, timeout=300)
    return out


def _progress(out: Path) -> dict | None:
    try:
        return json.loads((out / "checkpoint.json").read_text()).get("progress")
    except (OSError, ValueError):
        return None


def _wait_for_mid_epoch_checkpoint(process, out: Path, after_step: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        progress = _progress(out)
        if progress and progress["step"] >= after_step:
            return
        time.sleep(0.02)
    raise AssertionError("no checkpoint inside an epoch appeared")


@pytest.mark.slow
@pytest.mark.parametrize("step", [4, 8])
def test_sigkill_inside_an_epoch_then_resume(tmp_path, reference, step):
    out = tmp_path / "run"
    process = subprocess.Popen(_command(out, *EVERY), stderr=subprocess.DEVNULL)
    _wait_for_mid_epoch_checkpoint(process, out, step)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    saved = Checkpoint.load(out)
    assert saved.training.progress is not None  # killed inside an epoch
    subprocess.run(_command(out, *EVERY, "--resume"), check=True, capture_output=True)
    assert _same_model(out, reference)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    for row, want in zip(rows, expected, strict=True):  # the epochs' own figures too
        assert row["train_loss"] == want["train_loss"] and row["test_top1"] == want["test_top1"]


@pytest.mark.slow
def test_augmentation_in_workers_resumes_exactly(tmp_path):
    """Two workers crop the digits: each item's crop is seeded from (seed, epoch, index),
    not drawn from the worker's generator, so a run killed inside an epoch and resumed
    sees the crops the uninterrupted run saw."""
    workers = ["--workers", "2"]
    reference = tmp_path / "reference"
    subprocess.run(_command(reference, *workers), check=True, capture_output=True, timeout=300)
    out = tmp_path / "run"
    process = subprocess.Popen(_command(out, *EVERY, *workers), stderr=subprocess.DEVNULL)
    _wait_for_mid_epoch_checkpoint(process, out, 4)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    subprocess.run(_command(out, *EVERY, *workers, "--resume"), check=True, capture_output=True)
    assert _same_model(out, reference)


def test_with_workers_the_numbers_do_not_depend_on_how_many(tmp_path):
    runs = []
    for workers in ("1", "2"):
        out = tmp_path / f"workers{workers}"
        options = ["--epochs", "1", "--workers", workers, "--out_dir", str(out)]
        train(load_config(None, [*TINY, *options]))
        runs.append(out)
    assert _same_model(*runs)


@pytest.mark.slow
def test_sigterm_saves_stops_with_a_requeue_status_and_resume_auto_continues(tmp_path, reference):
    out = tmp_path / "run"
    # no interval at all: only the preemption writes a checkpoint inside the epoch
    quiet = ["--checkpoint_every_steps", "null", "--checkpoint_every_minutes", "null"]
    process = subprocess.Popen(_command(out, *quiet), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.02)  # training has started: the run folder is written
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_PREEMPTED, stderr
    assert "preempted" in stderr and "--resume" in stderr
    done = subprocess.run(_command(out, *quiet, "--resume", "auto"), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert _same_model(out, reference)


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = load_config(None, [*TINY, *EVERY, "--out_dir", str(tmp_path / "run")])
    reference = load_config(None, [*TINY, "--out_dir", str(tmp_path / "reference")])
    train(reference)
    real_save = checkpoint_module.save_file
    calls = {"count": 0}

    def full_disk(tensors, filename, metadata=None):
        calls["count"] += 1
        if calls["count"] == 3:  # the third checkpoint: half written, then no space left
            Path(filename).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save_file", full_disk)
    with pytest.raises(OSError, match=r"cannot write .*checkpoint.*No space left on device"):
        train(config)
    kept = Checkpoint.load(tmp_path / "run")  # the second checkpoint, whole
    assert kept.training.progress["step"] == 8
    assert not list((tmp_path / "run").glob(".*tmp"))  # no half-written file left behind
    monkeypatch.setattr(checkpoint_module, "save_file", real_save)
    train(config, resume=True)
    assert _same_model(tmp_path / "run", tmp_path / "reference")


def test_a_read_only_folder_fails_with_a_message_naming_it(tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint_module.tempfile, "mkstemp", refused)
    config = load_config(None, [*TINY, "--epochs", "1", "--out_dir", str(tmp_path / "run")])
    with pytest.raises(OSError, match=r"cannot write .*run.*Permission denied"):
        train(config)


def test_a_truncated_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    config = load_config(None, [*TINY, *EVERY, "--out_dir", str(tmp_path / "run")])
    train(config)
    newest = tmp_path / "run" / "checkpoint.safetensors"  # the last epoch's
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="skipping the checkpoint .*checkpoint.safetensors"):
        train(config, resume=True)  # from the one before: 8 steps into the last epoch
    assert Checkpoint.load(newest).epoch == 3
    reference = load_config(None, [*TINY, "--out_dir", str(tmp_path / "reference")])
    train(reference)
    assert _same_model(tmp_path / "run", tmp_path / "reference")


NEEDS_TORCHRUN = pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="needs torchrun",
)
# batches of 8: 20 steps a process an epoch, so the processes' agreement on signals
# (every 10 steps of the run, and at each epoch's end) falls inside epochs too
SMALL = ["--batch_size", "8"]


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory) -> Path:
    """The uninterrupted two-process run."""
    out = tmp_path_factory.mktemp("ddp") / "reference"
    with launched(out, 0, *SMALL, stderr=subprocess.PIPE) as group:
        _, stderr = group.communicate(timeout=300)
    assert group.returncode == 0, stderr[-6000:]
    return out


@pytest.mark.slow
@NEEDS_TORCHRUN
def test_a_killed_ddp_worker_is_restarted_and_resumes_by_itself(tmp_path, ddp_reference):
    """Under torchrun --max-restarts 1 one worker is killed after a checkpoint inside an
    epoch; the group restarts once, resumes from it by itself (no --resume on the command
    line) and ends where an uninterrupted group ends: one round of
    ``python -m benchmarks.elastic_restarts``.

    Before each restart joined on keys of its own in torchrun's store, the restarted
    group often read the dead group's addresses ("Connection refused", or a hang in
    ``init_process_group``; deepnc.engine.runtime): that benchmark finished 2 rounds of 10
    after one restart on that source tree."""
    ended = one_round(tmp_path, 1, 300, *SMALL)
    expected = {"outcome": "finished", "group_restarts": 1, "connections_refused": 0}
    assert ended == {**expected, "resumed": True}, (tmp_path / "stderr.txt").read_text()[-6000:]
    assert _same_model(tmp_path / "run", ddp_reference)


@pytest.mark.slow
@NEEDS_TORCHRUN
@pytest.mark.parametrize("target", ["agent", "one worker"])
def test_a_preempted_ddp_group_saves_every_process_and_resumes(tmp_path, ddp_reference, target):
    """SIGTERM to torchrun (which passes it on to every worker), or SIGUSR1 to one worker
    only (the other learns it at the next agreement): both processes save (rank 0 writes)
    and stop; ``--resume auto`` ends where an uninterrupted group ends."""
    out = tmp_path / "run"
    quiet = ["--checkpoint_every_steps", "null", "--checkpoint_every_minutes", "null"]
    with launched(out, 0, *SMALL, *quiet, stderr=subprocess.PIPE) as process:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.02)  # the first epoch is done
        time.sleep(0.3)  # into the second
        if target == "agent":
            process.send_signal(signal.SIGTERM)
        else:
            os.kill(group_workers(out, process)[-1], signal.SIGUSR1)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, stderr[-6000:]  # torchrun's own status: not finished
    assert stderr.count("deepnc train: preempted") == 2, stderr[-6000:]  # both processes
    with launched(out, 0, *SMALL, *quiet, "--resume", "auto", stderr=subprocess.PIPE) as done:
        _, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr[-6000:]
    assert _same_model(out, ddp_reference)


def test_each_torchrun_restart_joins_on_keys_of_its_own(monkeypatch, caplog):
    """The agent's store outlives a group: each restart's keys under its own prefix, so
    no process reads an address the previous group left there."""
    agent_store = dist.TCPStore("127.0.0.1", 0, 1, is_master=True)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(agent_store.port))
    for name, value in [("RANK", "0"), ("WORLD_SIZE", "1"), ("GROUP_WORLD_SIZE", "1")]:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "2")
    for restart in ("0", "1"):
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", restart)
        join_process_group("gloo", 1)
        dist.destroy_process_group()
    prefixes = {key.split("/")[1] for key in agent_store.list_keys()}
    assert prefixes == {"restart_0", "restart_1"}
    # across nodes the restart counts can differ: torch's own way, and a warning
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    with caplog.at_level(logging.WARNING, logger="deepnc"):
        join_process_group("gloo", 1)
    dist.destroy_process_group()
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in caplog.text


def _agreeing_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        watch = PreemptionWatch()
        hook = StepCheckpoints(lambda progress: None, steps_per_epoch=5, preemption=watch)
        watch.requested = rank == 1  # the signal reached one process only
        answers = [hook.wants_checkpoint(step) for step in range(1, 6)]
        between_epochs = hook.stop_requested()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps([answers, between_epochs]))
    finally:
        dist.destroy_process_group()


def test_processes_agree_on_a_signal_even_in_epochs_shorter_than_the_agreement_interval(
    tmp_path,
):
    """5 steps an epoch, agreement every 10: the epoch's last step agrees too, and so does
    the check between epochs; every process stops at the same step."""
    torch.multiprocessing.spawn(
        _agreeing_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2
    )
    for rank in range(2):
        answers, between_epochs = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert answers == [False, False, False, False, True] and between_epochs
