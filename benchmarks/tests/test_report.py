"""The reproduction report: the driver runs every script (smoke budget), the renderer turns
their JSON into RESULTS.md, and the committed RESULTS.md and README block are exactly
what the renderer makes of the committed JSON (so no number in them is typed by hand)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.common import command_line
from benchmarks.plan import BUDGETS, CLASSIFICATION_CONFIGS, plan
from benchmarks.render import (
    README_BEGIN,
    README_END,
    SECTIONS,
    load_results,
    report_markdown,
    with_readme_block,
)
from benchmarks.report_format import Results, mean_std
from benchmarks.run import step_arguments

ROOT = Path(__file__).resolve().parents[2]

SECTION_TITLES = (
    "1. Classification",
    "2. Ablations",
    "3. Explanations",
    "4. Segmentation",
    "5. Cost",
    "6a. Rejecting unknown inputs",
    "6b. Adding classes",
    "6c. `DNCClassifier`",
    "6d. A classifier with no training",
    "7. Tuning study",
)


def test_every_step_names_a_script_with_main_and_existing_configs():
    for budget in BUDGETS:
        steps = plan(budget)
        assert len({step.name for step in steps}) == len(steps)
        for step in steps:
            assert (ROOT / "benchmarks" / f"{step.script}.py").is_file()
            if "--config" in step.args:
                assert (ROOT / step.args[step.args.index("--config") + 1]).is_file()
    assert {f"classification_{n}" for n in CLASSIFICATION_CONFIGS} <= {
        step.name for step in plan("small")
    }
    with pytest.raises(ValueError, match="unknown budget"):
        plan("huge")


def test_the_plan_still_makes_the_commands_of_the_committed_small_results():
    """Each committed JSON of the small budget was written by the command the plan gives."""
    results, runs = ROOT / "benchmarks/results/small", ROOT / "runs/bench/small"
    driver = json.loads((results / "driver.json").read_text())
    for step in plan("small"):
        argv = step_arguments(step, "small", results, runs)
        command = command_line(step.script, argv)
        assert driver["steps"][step.name]["command"] == command
        assert json.loads((results / f"{step.name}.json").read_text())["command"] == command


def test_an_empty_results_folder_says_how_to_run_each_table(tmp_path):
    text = report_markdown(load_results(tmp_path), tmp_path, figures=False)
    for title in SECTION_TITLES:
        assert f"## {title}" in text
    assert text.count("Not run at this budget: `python -m benchmarks.run --budget") == len(SECTIONS)


def test_the_committed_report_and_readme_block_are_rendered_from_the_committed_json():
    results = load_results(ROOT / "benchmarks/results/small")
    assert results.data, "benchmarks/results/small holds no JSON: run `make results`"
    full = load_results(ROOT / "benchmarks/results/full")
    expected = report_markdown(results, ROOT, full, figures=False)
    committed = (ROOT / "RESULTS.md").read_text()
    assert committed == expected, (
        "RESULTS.md differs from its JSON: run python -m benchmarks.render"
    )
    readme = (ROOT / "README.md").read_text()
    assert README_BEGIN in readme and README_END in readme
    assert with_readme_block(readme, results) == readme, "the README's results block is stale"
    for figure in ("classification", "ablation", "segmentation", "cost"):
        assert results.figure(figure).is_file()


@pytest.mark.slow
def test_the_smoke_budget_runs_every_script_and_renders_the_report(tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    command = [sys.executable, "-m", "benchmarks.run", "--budget", "smoke"]
    command += ["--results-dir", str(results), "--runs-dir", str(runs)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    driver = json.loads((results / "driver.json").read_text())
    assert driver["budget"] == "smoke"
    for step in plan("smoke"):
        if step.needs_cuda:
            continue
        assert driver["steps"][step.name]["status"] == "done"
        data = json.loads((results / f"{step.name}.json").read_text())
        assert data["command"].startswith(f"python -m benchmarks.{step.script}")
    report = (results / "RESULTS.md").read_text()
    for title in SECTION_TITLES:
        assert f"## {title}" in report
    assert "Not run at this budget" not in report
    assert report.count("> **Here:**") == len(SECTIONS)
    for figure in ("classification", "ablation", "segmentation", "cost", "openset"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 1000
    assert not (ROOT / "runs/bench/smoke").exists()  # outputs went where they were told


def _classification_json(dnc: list[float], softmax: list[float]) -> dict:
    def row(head, values):
        mean, std = mean_std(values)
        return {
            "head": head,
            "top1": values,
            "top1_mean": mean,
            "top1_std": std,
            "trainable_parameters": 10,
            "subcentroid_numbers": 4 if head == "dnc" else 0,
            "seconds_per_epoch": 1.0,
            "step_seconds": 0.1,
            "step_ratio": 1.0,
        }

    config = {"epochs": 2, "batch_size": 10, "image_size": None, "head_options": {}}
    return {
        "command": "python -m benchmarks.classification",
        "dataset": "digits",
        "model": "resnet20",
        "config": config,
        "seeds": [0, 1, 2],
        "rows": [row("dnc", dnc), row("linear", softmax)],
        "runs": [{"train_size": 100, "test_size": 50}],
    }


@pytest.mark.parametrize(
    ("dnc", "softmax", "verdict"),
    [
        ([91.0, 92.0, 93.0], [90.0, 90.5, 91.0], "agrees"),
        ([80.0, 81.0, 82.0], [90.0, 90.5, 91.0], "does not agree"),
    ],
)
def test_the_classification_verdict_follows_the_numbers(tmp_path, dnc, softmax, verdict):
    results = Results(
        tmp_path, {"classification_digits_resnet20": _classification_json(dnc, softmax)}
    )
    lines = SECTIONS[0](results, tmp_path, False)
    here = next(line for line in lines if line.startswith("> **Here:**"))
    difference = mean_std(dnc)[0] - mean_std(softmax)[0]
    assert f"{difference:+.2f}" in here and f"reproduction {verdict} with the claim" in here
    # 2 epochs of 100 // 10 steps at momentum 0.999: 0.999 ** 20 of the seed is left
    assert "With 20 updates" in here and f"{0.999**20:.0%}" in here


def _ablation_json(random_pairwise: float) -> dict:
    def row(group, variant, top1, pairwise, share, change):
        return {
            "group": group,
            "variant": variant,
            "top1": [top1] * 3,
            "top1_mean": top1,
            "top1_std": 0.0,
            "seeds": [0, 1, 2],
            "pairwise_cosine": pairwise,
            "smallest_share": share,
            "nearest_training_cosine": 0.9,
            "change": {"head": "dnc", "head_options": change},
        }

    recipe = {"epochs": 4, "batch_size": 100, "train_subset": 1000, "head_options": {}}
    rows = [
        row("paper", "paper settings", 90.0, 0.30, 0.20, {}),
        row("assignment", "nearest", 80.0, 0.50, 0.01, {"assignment": "nearest"}),
        row("assignment", "random", 89.0, random_pairwise, 0.25, {"assignment": "random"}),
    ]
    return {
        "command": "python -m benchmarks.fashion_mnist_ablation",
        "recipe": recipe,
        "rows": rows,
    }


@pytest.mark.parametrize(
    ("random_pairwise", "said"), [(0.99, "a collapse"), (0.40, "not a collapse")]
)
def test_the_ablation_verdict_says_whether_random_assignment_collapses(
    tmp_path, random_pairwise, said
):
    results = Results(tmp_path, {"fashion_mnist_ablation": _ablation_json(random_pairwise)})
    here = next(line for line in SECTIONS[1](results, tmp_path, False) if "**Here:**" in line)
    assert f"mean cosine of {random_pairwise:.3f} against 0.300 with Sinkhorn, {said}" in here
    assert "least-used sub-centroid 0.010 of a class against 0.200" in here
    # 4 epochs of 1000 // 100 steps: 0.999 ** 40 of the seed is left
    assert "With at most 40 updates" in here and f"{0.999**40:.0%}" in here


def test_the_weight_left_on_the_seeds_follows_the_half_life():
    from benchmarks.report_accuracy import seed_weight_left

    recipe = {"epochs": 3, "batch_size": 100, "head_options": {"momentum": 0.999}}
    updates, momentum, left = seed_weight_left(recipe, train_size=2000)
    assert (updates, momentum) == (60, 0.999) and left == pytest.approx(0.999**60)
    halved = {**recipe, "subcentroid_half_life": 1.5}  # 30 updates: 3 epochs are 2 half-lives
    updates, momentum, left = seed_weight_left(halved, train_size=2000)
    assert updates == 60 and left == pytest.approx(0.25)
    long = {**halved, "epochs": 1000}  # a half-life past 693 updates stays at the cap
    assert seed_weight_left(long, train_size=200_000)[1] == 0.999
