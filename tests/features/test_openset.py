"""Open-set scores, calibration, rejection and the AUROC / FPR figures."""

import pytest
import torch

from deepnc.models import create_model
from deepnc.openset import (
    REJECT,
    calibrate_threshold,
    confidence_scores,
    ood_metrics,
    predict,
)


def test_scores_by_hand():
    logits = torch.tensor([[5.0, 3.0, -1.0], [1.0, 1.0, 0.0]])  # DNC logits with tau = 0.1
    assert confidence_scores(logits, "similarity", tau=0.1).tolist() == pytest.approx([0.5, 0.1])
    assert confidence_scores(logits, "margin", tau=0.1).tolist() == pytest.approx([0.2, 0.0])
    assert confidence_scores(logits, "max_logit").tolist() == [5.0, 1.0]
    softmax = confidence_scores(logits, "max_softmax")
    assert softmax[0] == pytest.approx(torch.softmax(logits[0], 0).max())
    with pytest.raises(ValueError, match="needs the DNC head's tau"):
        confidence_scores(logits, "similarity")
    with pytest.raises(ValueError, match="score must be one of"):
        confidence_scores(logits, "entropy")


def test_calibration_keeps_the_asked_fraction():
    scores = torch.arange(100, dtype=torch.float) / 100  # 0.00 .. 0.99
    threshold = calibrate_threshold(scores, tpr=0.95)
    assert threshold == pytest.approx(0.05) and (scores >= threshold).float().mean() == 0.95
    assert calibrate_threshold(scores, tpr=1.0) == 0.0
    with pytest.raises(ValueError, match="tpr"):
        calibrate_threshold(scores, tpr=0)


def test_ood_metrics_by_hand():
    known, unknown = torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0.65, 0.1])
    figures = ood_metrics(known, unknown, tpr=0.75)  # threshold 0.7 keeps 3 of 4 known
    assert figures["threshold"] == pytest.approx(0.7) and figures["fpr_at_tpr"] == 0.0
    assert figures["auroc"] == pytest.approx(7 / 8)  # one (known, unknown) pair out of 8 misordered


def test_predict_rejects_below_the_threshold():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=3, in_chans=1, head_options={"memory_size": 0})
    model.fc.update(torch.randn(30, 64), torch.arange(3).repeat(10))
    images = torch.randn(6, 1, 16, 16)
    plain, scores = predict(model, images)
    assert (plain >= 0).all() and ((scores >= -1) & (scores <= 1)).all()
    middle = float(scores.median())
    rejected, _ = predict(model, images, reject_below=middle)
    assert torch.equal(rejected == REJECT, scores < middle)
    assert torch.equal(rejected[scores >= middle], plain[scores >= middle])
    with pytest.raises(ValueError, match=r"must lie in \[-1.0, 1.0\]"):
        predict(model, images, reject_below=1.5)
    softmax = create_model("resnet20", num_classes=3, in_chans=1, head="linear")
    with pytest.raises(ValueError, match="score needs a DNC head"):
        predict(softmax, images, score="similarity")
    assert predict(softmax, images, reject_below=0.5, score="max_softmax")[0].shape == (6,)
