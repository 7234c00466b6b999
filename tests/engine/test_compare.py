"""The comparison table reads the split the runs scored."""

import pytest

from deepnc.engine.compare import comparison_markdown, comparison_rows


def _summary(head, seed, split, top1):
    return {
        "head": head,
        "seed": seed,
        "task": "classification",
        "evaluated_on": split,
        f"{split}_top1": top1,
        "parameters": {"trainable": 10, "subcentroids": 4 if head == "dnc" else 0},
        "seconds_per_epoch": 1.0,
        "step_seconds": 0.5 if head == "dnc" else 0.4,
        "model": "resnet20",
        "dataset": "digits",
        "epochs": 1,
        "train_size": 8,
        "test_size": 4,
    }


@pytest.mark.parametrize("split", ["test", "val"])
def test_rows_and_table_use_the_scored_split(split):
    summaries = [_summary(h, s, split, v) for h, s, v in [("dnc", 0, 0.5), ("dnc", 1, 0.7)]]
    summaries += [_summary("linear", 0, split, 0.25)]
    rows = comparison_rows(summaries)
    assert rows[0]["split"] == split and rows[0]["top1_mean"] == pytest.approx(60.0)
    assert rows[0]["step_ratio"] == pytest.approx(1.25)
    header = comparison_markdown(summaries).splitlines()[2]
    assert ("val top-1 (%)" in header) == (split == "val")
