"""Similarity maps: their mean is the cosine to the sub-centroid, exactly, for every kind of
head normalisation (and a learnt projection) and backbone whose pooling can be found; the
rest are refused."""

import pytest
import timm
import torch
import torchvision

from deepnc.explain.similarity_maps import contribution_maps, find_global_pools, upsample
from deepnc.models import create_model
from deepnc.nn import convert
from deepnc.nn.hooks import single_dnc_head


def _fitted(model, in_chans=1, side=28):
    """A model whose head has been updated on real forward passes (so the LayerNorm and
    the sub-centroids are not at their initial values)."""
    head = single_dnc_head(model)
    with torch.no_grad():
        head.norm.weight.uniform_(0.5, 1.5) if hasattr(head.norm, "weight") else None
        head.norm.bias.uniform_(-0.2, 0.2) if hasattr(head.norm, "bias") else None
    images = torch.randn(12, in_chans, side, side)
    model.train()
    from deepnc import training_targets

    with torch.no_grad(), training_targets(model, torch.arange(12) % head.num_classes):
        model(images)
    return model.eval(), head


@pytest.mark.parametrize("layer_norm, projection", [(True, None), (False, None), (True, 16)])
def test_the_mean_of_the_map_is_the_cosine_and_the_logit(layer_norm, projection):
    options = {"layer_norm": layer_norm, "projection": projection}
    model = create_model("resnet20", num_classes=3, in_chans=1, head_options=options)
    model, head = _fitted(model)
    images = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        logits = model(images)
    predicted = logits.argmax(1)
    embedded = head.embed(torch.stack([model.forward_head(model.forward_features(images), True)]))[
        0
    ]
    nearest = torch.einsum("nd,nkd->nk", embedded, head.subcentroids[predicted]).argmax(1)
    chosen = head.subcentroids[predicted, nearest]
    result = contribution_maps(model, images, chosen)
    assert result.maps.shape == (5, 7, 7)
    assert torch.allclose(result.maps.mean(dim=(1, 2)), result.cosine, atol=1e-5)
    # the cosine of the deciding sub-centroid is the logit times tau
    assert torch.allclose(result.cosine, logits.max(1).values * head.tau, atol=1e-5)
    assert upsample(result.maps, (28, 28)).shape == (5, 28, 28)


def test_torchvision_and_timm_backbones():
    tv = convert(torchvision.models.resnet18(num_classes=4), num_subcentroids=2)
    tv, head = _fitted(tv, in_chans=3, side=64)
    chosen = head.subcentroids[torch.zeros(2, dtype=torch.long), 0]
    result = contribution_maps(tv, torch.randn(2, 3, 64, 64), chosen)
    assert torch.allclose(result.maps.mean(dim=(1, 2)), result.cosine, atol=1e-5)
    assert result.maps.shape == (2, 2, 2)

    tm = convert(timm.create_model("resnet10t", num_classes=4), num_subcentroids=2)
    tm, head = _fitted(tm, in_chans=3, side=64)
    result = contribution_maps(tm, torch.randn(2, 3, 64, 64), head.subcentroids[:2, 0])
    assert torch.allclose(result.maps.mean(dim=(1, 2)), result.cosine, atol=1e-5)


def test_backbones_without_a_usable_pooling_are_refused_by_name():
    vit = convert(
        timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, patch_size=8),
        num_subcentroids=2,
    )
    with pytest.raises(ValueError, match="VisionTransformer has no global average pooling"):
        find_global_pools(vit)
    mobile = convert(torchvision.models.mobilenet_v3_small(num_classes=3), num_subcentroids=2)
    mobile, head = _fitted(mobile, in_chans=3, side=64)
    with pytest.raises(ValueError, match="changes the pooled features before its head"):
        contribution_maps(mobile, torch.randn(2, 3, 64, 64), head.subcentroids[:2, 0])


def test_explain_batch_returns_the_maps_of_input_and_exemplar():
    from deepnc.explain import explain_batch, snap_subcentroids
    from deepnc.explain.embeddings import embed_batch

    model, head = _fitted(create_model("resnet20", num_classes=3, in_chans=1))
    train_images = torch.randn(30, 1, 28, 28)
    train_labels = torch.arange(30) % 3
    embedded, _ = embed_batch(model, train_images)
    exemplars = snap_subcentroids(head.subcentroids, embedded, train_labels)
    images = torch.randn(4, 1, 28, 28)
    explanations = explain_batch(
        model,
        images,
        exemplars=exemplars,
        top_classes=2,
        maps=True,
        exemplar_images=lambda index: train_images[index],
    )
    for explanation in explanations:
        for evidence in explanation.classes:
            assert evidence.map.shape == (7, 7)
            assert abs(float(evidence.map.mean()) - evidence.similarity) < 1e-5
            # the exemplar's map sums to the exemplar's own cosine to the sub-centroid
            assert abs(float(evidence.exemplar_map.mean()) - evidence.exemplar_similarity) < 1e-5
        assert "map" not in str(explanation.to_dict())


def test_a_one_pixel_feature_map_is_reported_as_no_map():
    from deepnc.commands.explain import _has_maps

    model = create_model("resnet20", num_classes=3, in_chans=1).eval()
    assert _has_maps(model, torch.randn(1, 1, 28, 28)) is None  # 7x7
    assert "1x1 at this input size, too coarse" in _has_maps(model, torch.randn(1, 1, 4, 4))
