"""tau="auto": the temperature from the class count (AdaCos's fixed scale, inverted)."""

import math

import numpy as np
import pytest
import torch

from deepnc import DNCHead
from deepnc.incremental import add_classes, remove_classes
from deepnc.nn.temperature import auto_tau, check_tau
from deepnc.sklearn import DNCClassifier


@pytest.mark.parametrize(
    ("classes", "tau"), [(1000, 0.1024), (150, 0.1413), (19, 0.2446), (10, 0.3218)]
)
def test_auto_tau_is_one_over_adacos_scale(classes, tau):
    assert auto_tau(classes) == pytest.approx(1 / (math.sqrt(2) * math.log(classes - 1)))
    assert auto_tau(classes) == pytest.approx(tau, abs=1e-4)


def test_two_classes_take_the_value_of_three():
    assert auto_tau(2) == auto_tau(3) == pytest.approx(1 / (math.sqrt(2) * math.log(2)))


@pytest.mark.parametrize("bad", [0, -0.1, "AUTO", None, True, float("nan")])
def test_a_bad_tau_is_refused_with_the_allowed_values(bad):
    with pytest.raises(ValueError, match="a number > 0 or 'auto'"):
        check_tau(bad)
    with pytest.raises(ValueError, match="tau"):
        DNCHead(8, 3, tau=bad)


def test_an_auto_head_scales_its_logits_by_the_class_count():
    features, labels = torch.randn(20, 8), torch.arange(20) % 10
    auto, fixed = DNCHead(8, 10, tau="auto"), DNCHead(8, 10, tau=0.1)
    fixed.load_state_dict(auto.state_dict())
    auto(features, labels)
    fixed.load_state_dict(auto.state_dict())
    auto.eval(), fixed.eval()
    ratio = fixed(features) / auto(features)
    torch.testing.assert_close(ratio, torch.full_like(ratio, auto_tau(10) / 0.1))
    assert auto.tau == pytest.approx(auto_tau(10)) and "tau='auto'" in repr(auto)


def test_an_auto_head_recomputes_tau_when_classes_are_added_or_removed():
    head = DNCHead(8, 4, num_subcentroids=2, tau="auto", memory_size=0)
    head(torch.randn(16, 8), torch.arange(16) % 4)
    head.eval()
    add_classes(head, torch.randn(12, 8), torch.arange(12) % 6)
    assert head.num_classes == 10 and head.tau == pytest.approx(auto_tau(10))
    remove_classes(head, [0, 1, 2, 3, 4, 5, 6])
    assert head.num_classes == 3 and head.tau == pytest.approx(auto_tau(3))


def test_the_estimator_takes_auto():
    generator = np.random.default_rng(0)
    features, labels = generator.normal(size=(60, 5)), np.arange(60) % 6
    auto = DNCClassifier(tau="auto", random_state=0).fit(features, labels)
    fixed = DNCClassifier(tau=auto_tau(6), random_state=0).fit(features, labels)
    np.testing.assert_allclose(auto.decision_function(features), fixed.decision_function(features))
    with pytest.raises(ValueError, match="tau"):
        DNCClassifier(tau="warm").fit(features, labels)
