import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import deepnc
from deepnc import DNCHead


def seeded_head(**options):
    """A head whose every class is seeded, in training mode."""
    head = DNCHead(8, 3, num_subcentroids=2, **options)
    head(torch.randn(30, 8), torch.arange(3).repeat(10))
    return head


def test_vector_and_dense_shapes_and_types_agree_in_train_and_eval():
    head = DNCHead(16, 5, num_subcentroids=3)
    x, y = torch.randn(10, 16), torch.arange(5).repeat(2)
    maps, masks = torch.randn(2, 16, 4, 6), torch.randint(0, 5, (2, 4, 6))
    trained = head(x, y), head(maps, masks)
    head.eval()
    evaluated = head(x), head(maps)
    for train_out, eval_out in zip(trained, evaluated, strict=True):
        assert type(train_out) is type(eval_out) is torch.Tensor
        assert train_out.shape == eval_out.shape and eval_out.dtype == torch.float32
    assert evaluated[0].shape == (10, 5) and evaluated[1].shape == (2, 5, 4, 6)


def test_logits_are_max_cosine_over_tau_and_argmax_is_the_nearest_subcentroid():
    head = seeded_head(tau=0.25).eval()
    x = torch.randn(20, 8)
    embedded = F.normalize(head.norm(x), dim=-1)
    cosine = embedded @ head.subcentroids.view(-1, 8).T  # (N, C*K)
    expected = cosine.view(20, 3, 2).amax(-1) / 0.25
    logits = head(x)
    assert torch.allclose(logits, expected, atol=1e-6)
    assert torch.equal(logits.argmax(1), cosine.argmax(1) // 2)


def test_dense_logits_equal_vector_logits_pixel_by_pixel():
    head = seeded_head().eval()
    maps = torch.randn(2, 8, 3, 5)
    dense = head(maps)
    vectors = head(maps.permute(0, 2, 3, 1).reshape(-1, 8))
    assert torch.allclose(dense.permute(0, 2, 3, 1).reshape(-1, 3), vectors, atol=1e-6)


def test_subcentroids_are_buffers_not_parameters_and_get_no_gradient():
    head = seeded_head()
    names = [name for name, _ in head.named_parameters()]
    assert names == ["norm.weight", "norm.bias"]
    assert "bank.subcentroids" in head.state_dict() and "memory.features" in head.state_dict()


def test_backward_works_after_the_subcentroids_moved():
    head = seeded_head(momentum=0.5)
    x = torch.randn(30, 8, requires_grad=True)
    y = torch.arange(3).repeat(10)
    before = head.subcentroids.clone()
    logits = head(x, y)  # updates the buffer in place
    assert not torch.equal(before, head.subcentroids)
    F.cross_entropy(logits, y).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert head.norm.weight.grad is not None
    # the gradient is the one of the sub-centroids the forward used
    x2 = x.detach().clone().requires_grad_(True)
    head_then = seeded_head(momentum=0.5)
    head_then.bank.subcentroids.copy_(before)
    F.cross_entropy(head_then.eval()(x2), y).backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)


def test_learns_a_separable_problem_end_to_end():
    torch.manual_seed(0)
    centres = torch.randn(4, 2) * 3
    labels = torch.randint(0, 4, (2000,))
    points = centres[labels] + torch.randn(2000, 2) * 0.5
    embed = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 16))
    head = DNCHead(16, 4, num_subcentroids=2, momentum=0.9, memory_size=32)
    optimiser = torch.optim.Adam([*embed.parameters(), *head.parameters()], lr=1e-2)
    for start in range(0, 2000, 50):
        x, y = points[start : start + 50], labels[start : start + 50]
        loss = F.cross_entropy(head(embed(x), y), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    head.eval()
    test_labels = torch.randint(0, 4, (500,))
    test_points = centres[test_labels] + torch.randn(500, 2) * 0.5
    accuracy = (head(embed(test_points)).argmax(1) == test_labels).float().mean()
    assert accuracy > 0.9
    assert head.bank.diagnostics().overall_correct_fraction > 0.7


def test_dense_update_ignores_ignore_index_and_resizes_targets():
    head = DNCHead(4, 2, num_subcentroids=2, ignore_index=255)
    maps = torch.randn(1, 4, 2, 2)
    ignored = torch.full((1, 4, 4), 255)
    head(maps, ignored)
    assert not head.bank.initialised.any()  # nothing but ignored pixels: untouched
    big = torch.zeros(1, 4, 4, dtype=torch.long)
    big[:, :, 2:] = 1  # the right half is class 1, at twice the feature resolution
    big[:, 0, 0] = 255
    head(maps, big)
    assert head.bank.initialised.all()
    assert head.bank.seen.tolist() == [1, 2]  # pixel (0, 0) was ignored after resizing


def test_nonfinite_features_never_reach_the_subcentroids_or_the_memory():
    head = seeded_head()
    x = torch.randn(30, 8)
    x[3, 0], x[7, 5] = float("nan"), float("inf")
    y = torch.arange(3).repeat(10)
    with pytest.warns(UserWarning, match="2 sample"):
        head(x, y)
    assert torch.isfinite(head.subcentroids).all() and torch.isfinite(head.memory.features).all()
    strict = seeded_head(nonfinite="raise")
    before = strict.subcentroids.clone()
    with pytest.raises(ValueError, match="features must be finite"):
        strict(x, y)
    assert torch.equal(before, strict.subcentroids)


def test_all_nan_batch_leaves_everything_untouched():
    head = seeded_head()
    state = {k: v.clone() for k, v in head.state_dict().items()}
    with pytest.warns(UserWarning):
        head(torch.full((6, 8), float("nan")), torch.zeros(6, dtype=torch.long))
    after = head.state_dict()
    changed = [k for k, v in state.items() if not torch.equal(v, after[k])]
    assert changed == ["bank.num_updates"]


def test_empty_batches_give_empty_logits_and_change_nothing():
    head = seeded_head()
    before = head.subcentroids.clone()
    assert head(torch.randn(0, 8), torch.zeros(0, dtype=torch.long)).shape == (0, 3)
    assert head(torch.randn(0, 8, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long)).shape == (
        0,
        3,
        4,
        4,
    )
    assert torch.equal(before, head.subcentroids)


def test_absent_classes_are_left_alone():
    head = seeded_head(momentum=0.5)
    before = head.subcentroids.clone()
    head(torch.randn(12, 8), torch.zeros(12, dtype=torch.long))
    assert torch.equal(before[1:], head.subcentroids[1:])


@pytest.mark.parametrize(
    "features, targets, error, words",
    [
        (torch.randn(4, 8, 2), None, ValueError, r"\(N, D\) or \(B, D, H, W\)"),
        (torch.randn(4, 7), None, ValueError, "in_features = 8"),
        (torch.ones(4, 8, dtype=torch.long), None, TypeError, "floating point"),
        ([[0.0] * 8], None, TypeError, "torch.Tensor"),
        (torch.randn(4, 8), torch.zeros(5, dtype=torch.long), ValueError, r"shape \(4,\)"),
        (torch.randn(4, 8), torch.zeros(4), TypeError, "integer"),
        (torch.randn(4, 8), torch.zeros(4, dtype=torch.bool), TypeError, "integer"),
        (torch.randn(4, 8), torch.tensor([0, 1, 3, -1]), ValueError, r"\[0, 3\).*\[-1, 3\]"),
        (torch.randn(2, 8, 3, 3), torch.zeros(2, 3, dtype=torch.long), ValueError, "H, W"),
        (torch.randn(2, 8, 3, 3), torch.zeros(3, 3, 3, dtype=torch.long), ValueError, "H, W"),
    ],
)
def test_bad_input_gets_a_clear_error_and_corrupts_nothing(features, targets, error, words):
    head = seeded_head()
    state = {k: v.clone() for k, v in head.state_dict().items()}
    with pytest.raises(error, match=words):
        head(features, targets)
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize(
    "options, error, words",
    [
        (dict(num_subcentroids=8, memory_size=4), ValueError, "memory_size must be 0 or >= "),
        (dict(tau=0.0), ValueError, "tau"),
        (dict(memory_size=-1), ValueError, "memory_size"),
        (dict(max_pixels_per_class=0), ValueError, "max_pixels_per_class"),
        (dict(nonfinite="ignore"), ValueError, "nonfinite"),
        (dict(ignore_index=1.5), TypeError, "ignore_index"),
        (dict(momentum=2), ValueError, "momentum"),
        (dict(num_subcentroids=2.0), TypeError, "num_subcentroids"),
        (dict(in_features=1), ValueError, "embedding must have >= 2 channels with layer_norm"),
    ],
)
def test_bad_hyper_parameters_are_named(options, error, words):
    options = dict(in_features=8, num_classes=3) | options
    with pytest.raises(error, match=words):
        DNCHead(**options)


def test_state_dict_round_trip_restores_identical_logits():
    head = seeded_head()
    for _ in range(3):
        head(torch.randn(30, 8), torch.arange(3).repeat(10))
    restored = DNCHead(8, 3, num_subcentroids=2)
    restored.load_state_dict(head.state_dict())
    x = torch.randn(5, 8)
    assert torch.equal(head.eval()(x), restored.eval()(x))
    assert torch.equal(head.memory.features, restored.memory.features)


def test_torch_export_of_the_head_in_eval_mode():
    head = seeded_head().eval()
    x = torch.randn(4, 8)
    exported = torch.export.export(head, (x,))
    assert torch.allclose(exported.module()(x), head(x), atol=1e-6)


def test_autocast_bfloat16_keeps_fp32_subcentroids_and_predictions():
    head = seeded_head()
    reference = DNCHead(8, 3, num_subcentroids=2)
    reference.load_state_dict(head.state_dict())
    x, y = torch.randn(30, 8), torch.arange(3).repeat(10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x, y)
    reference(x, y)
    assert logits.dtype == torch.float32 and head.subcentroids.dtype == torch.float32
    assert torch.equal(head.subcentroids, reference.subcentroids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = head.eval()(x.bfloat16())
    high = reference.eval()(x.bfloat16().float())
    assert torch.equal(low.argmax(1), high.argmax(1))


def test_reset_changes_the_class_count_like_timm():
    head = seeded_head()
    head.reset(5)
    assert head(torch.randn(2, 8)).shape == (2, 5)
    assert not head.bank.initialised.any() and head.memory.features.shape == (5, 64, 8)


def test_explicit_update_works_in_eval_mode():
    head = DNCHead(8, 3, num_subcentroids=2).eval()
    head.update(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert head.bank.initialised.all()


def test_training_targets_reach_a_head_inside_a_model():
    model = nn.Sequential(nn.Linear(5, 8), DNCHead(8, 3, num_subcentroids=2))
    y = torch.tensor([0, 1, 2, 0])
    with deepnc.training_targets(model, y):
        model(torch.randn(4, 5))
    assert model[1].bank.initialised.all()
    model(torch.randn(4, 5))  # outside the context: no targets, no update
    assert int(model[1].bank.num_updates) == 1
    with pytest.raises(ValueError, match="DNCHead"):
        with deepnc.training_targets(nn.Linear(2, 2), y):
            pass


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 24),
    dim=st.integers(2, 12),
    classes=st.integers(1, 6),
    k=st.integers(1, 4),
    memory=st.sampled_from([0, 4, 16]),
    dense=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_properties_on_random_shapes(n, dim, classes, k, memory, dense, seed):
    generator = torch.Generator().manual_seed(seed)
    memory = max(memory, k) if memory else 0
    head = DNCHead(dim, classes, num_subcentroids=k, memory_size=memory, momentum=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            if dense:
                x = torch.randn(max(n // 4, 1), dim, 2, 3, generator=generator)
                y = torch.randint(-1, classes, (x.shape[0], 2, 3), generator=generator)
                y[y < 0] = -100
            else:
                x = torch.randn(n, dim, generator=generator)
                y = torch.randint(0, classes, (n,), generator=generator)
            logits = head(x, y)
            assert logits.shape == ((x.shape[0], classes, 2, 3) if dense else (n, classes))
            assert torch.isfinite(logits).all()
    norms = head.subcentroids.norm(dim=-1)
    seeded = head.bank.initialised
    assert torch.allclose(norms[seeded], torch.ones_like(norms[seeded]), atol=1e-5)
    assert (norms[~seeded] == 0).all()


def test_logit_norm_replaces_the_temperature_by_a_layernorm_over_the_classes():
    from deepnc.export import FrozenDNCHead
    from deepnc.incremental import remove_classes

    head = DNCHead(6, 3, num_subcentroids=2, logit_norm=True)
    features, targets = torch.randn(12, 6), torch.arange(3).repeat(4)
    head(features, targets)
    head.eval()
    logits = head(features)
    scores = head._similarities(features)[1].amax(dim=-1)
    torch.testing.assert_close(logits, torch.nn.functional.layer_norm(scores, (3,)))
    assert {"logit_norm.weight", "logit_norm.bias"} <= set(head.state_dict())
    torch.testing.assert_close(FrozenDNCHead.from_head(head)(features), logits)
    with pytest.raises(ValueError, match="cannot be added or removed without training"):
        remove_classes(head, [0])
    assert DNCHead(6, 3).logit_norm is None
