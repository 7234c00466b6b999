"""Where an image matches a sub-centroid: similarity maps, exact and gradient-free.

A classification backbone ends in global average pooling: the head sees the mean
``x̄ = mean_l x_l`` of the last feature map's locations, normalises it
(``z = LayerNorm(x̄) / ||LayerNorm(x̄)||``) and scores ``cos = <z, p>`` against a
sub-centroid ``p``. LayerNorm is affine per sample: with ``μ(x)`` the mean over channels,
``σ(x̄)`` the pooled feature's standard deviation (with the LayerNorm's eps) and ``γ``,
``β`` its weight and bias, ``x̄ - μ(x̄) = mean_l (x_l - μ(x_l))``, so

    cos = mean_l m_l,    m_l = (<γ ⊙ (x_l - μ(x_l)), p> / σ(x̄) + <β, p>) / ||LayerNorm(x̄)||

**exactly**: the map ``m`` (one value per location) is an additive decomposition of the
cosine, hence of the logit ``cos / tau``. What is not exact: ``σ(x̄)`` and the norm are
the pooled feature's, shared by all locations, so ``m_l`` is a location's *contribution*
to the image's similarity, not the similarity the location would have on its own; and
the map has the feature map's resolution (a quarter or less of the image's), upsampled
bilinearly for display. With ``layer_norm=False`` the same holds with ``γ = 1``,
``β = 0``, no centring and ``σ = 1``.

Backbones whose pooling is not a global average before the head (a ViT's class token, a
torchvision MobileNetV3's extra linear layer) are refused by name.

>>> import torch
>>> from deepnc.models import create_model
>>> model = create_model("resnet20", num_classes=3, in_chans=1).eval()
>>> model.fc.update(torch.randn(12, 64), torch.arange(3).repeat(4))
>>> maps = contribution_maps(model, torch.randn(2, 1, 28, 28), model.fc.subcentroids[:2, 0])
>>> maps.maps.shape, maps.cosine.shape
(torch.Size([2, 7, 7]), torch.Size([2]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepnc.nn.hooks import captured_inputs, single_dnc_head

__all__ = [
    "SimilarityMaps",
    "contribution_maps",
    "contributions",
    "find_global_pools",
    "pooled_feature_maps",
    "upsample",
]

POOL_TOLERANCE = 1e-4  # pooled map against the head's input: the same tensor, up to rounding


@dataclass
class SimilarityMaps:
    """Per-location contributions to the cosine of each image to one sub-centroid.

    Attributes:
        maps: ``(N, h, w)``; ``maps[n].mean()`` equals ``cosine[n]`` (to rounding).
        cosine: ``(N,)`` the cosine of each image's embedding to its sub-centroid.
    """

    maps: torch.Tensor
    cosine: torch.Tensor


def find_global_pools(model: nn.Module) -> list[nn.Module]:
    """Every global average pooling of ``model``: ``AdaptiveAvgPool2d(1)`` (torchvision,
    this library's ResNets; squeeze-excitation blocks too) and timm's
    ``SelectAdaptivePool2d`` of type ``avg``. The one the head classifies is the last
    called (:func:`pooled_feature_maps`).

    Raises:
        ValueError: none (the message names the model's type).
    """
    found = []
    for module in model.modules():
        if isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1)):
            found.append(module)
        elif type(module).__name__ == "SelectAdaptivePool2d" and "avg" in str(
            getattr(module, "pool_type", "")
        ):
            found.append(module)
    if not found:
        raise ValueError(
            f"similarity maps need the feature map that a global average pooling turns into "
            f"the head's input; {type(model).__name__} has no global average pooling (a ViT "
            "classifies a class token: use a convolutional backbone)"
        )
    return found


@torch.no_grad()
def pooled_feature_maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(N, D, h, w)`` fp32: the feature map whose global average the DNC head classifies.

    Raises:
        ValueError: no global average pooling, or layers between it and the head.
    """
    head = single_dnc_head(model, "similarity maps need")
    calls: list[torch.Tensor] = []
    hooks = [
        pool.register_forward_pre_hook(lambda _, args: calls.append(args[0].detach()))
        for pool in find_global_pools(model)
    ]
    model.eval()
    try:
        with captured_inputs(head) as head_inputs:
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    maps = calls[-1].float()  # the last pooling before the head
    same = maps.dim() == 4 and maps.shape[1] == head.in_features
    if not same or not torch.allclose(
        maps.mean(dim=(2, 3)), head_inputs[-1].float(), atol=POOL_TOLERANCE, rtol=1e-4
    ):
        raise ValueError(
            f"{type(model).__name__} changes the pooled features before its head (its last "
            f"global pooling sees {tuple(maps.shape)}, its head takes {head.in_features} "
            "features): similarity maps need the head to classify the pooled map itself"
        )
    return maps


@torch.no_grad()
def contributions(
    norm: nn.Module,
    maps: torch.Tensor,
    subcentroids: torch.Tensor,
    projection: nn.Module | None = None,
) -> SimilarityMaps:
    """The decomposition of the module docstring for T sub-centroids per image.

    Args:
        norm: the head's normalisation (``DNCHead.norm``: a LayerNorm or the identity).
        maps: ``(N, D, h, w)`` pooled feature maps (:func:`pooled_feature_maps`).
        subcentroids: ``(N, T, E)`` unit sub-centroids (or ``(N, E)``, T = 1).
        projection: the head's linear projection D -> E (``DNCHead.projection``), applied
            at every position first: it has no bias, so it commutes with the mean and the
            decomposition stays exact. ``None``: E = D, no projection.

    Returns:
        maps ``(N, T, h, w)`` (or ``(N, h, w)``) and cosines ``(N, T)`` (or ``(N,)``).
    """
    single = subcentroids.dim() == 2
    if projection is not None:
        maps = projection(maps.float().permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    p = (subcentroids[:, None] if single else subcentroids).float().to(maps.device)
    mean = maps.mean(dim=(2, 3))  # x̄, (N, D)
    if isinstance(norm, nn.LayerNorm):
        weight = norm.weight.float() if norm.weight is not None else torch.ones_like(mean[0])
        bias = norm.bias.float() if norm.bias is not None else torch.zeros_like(mean[0])
        centred = (maps - maps.mean(dim=1, keepdim=True)) * weight[:, None, None]
        sigma = (mean.var(dim=1, unbiased=False) + norm.eps).sqrt()  # (N,)
        normalised = norm(mean)  # LayerNorm(x̄)
        terms = torch.einsum("ndhw,ntd->nthw", centred, p) / sigma[:, None, None, None]
        terms = terms + (bias * p).sum(dim=2)[:, :, None, None]
    else:
        normalised = mean
        terms = torch.einsum("ndhw,ntd->nthw", maps, p)
    length = normalised.norm(dim=1).clamp_min(1e-12)  # ||LayerNorm(x̄)||
    result = terms / length[:, None, None, None]
    cosine = torch.einsum("nd,ntd->nt", F.normalize(normalised, dim=1), p)
    if single:
        return SimilarityMaps(maps=result[:, 0], cosine=cosine[:, 0])
    return SimilarityMaps(maps=result, cosine=cosine)


def contribution_maps(
    model: nn.Module, images: torch.Tensor, subcentroids: torch.Tensor
) -> SimilarityMaps:
    """The contribution map of every image to its sub-centroid(s) (module docstring).

    Args:
        model: a classification model with one DNC head after global average pooling.
        images: ``(N, C, H, W)`` preprocessed inputs.
        subcentroids: ``(N, D)`` the unit sub-centroid each image is compared with (for
            example the deciding one of its predicted class), or ``(N, T, D)``.

    Raises:
        ValueError: no global average pooling, or layers between it and the head.
    """
    head = single_dnc_head(model, "similarity maps need")
    maps = pooled_feature_maps(model, images)
    return contributions(head.norm, maps, subcentroids, head.projection)


def upsample(maps: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``(N, h, w)`` maps resized to ``size`` ``(H, W)`` (bilinear), for display."""
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[
        :, 0
    ]
