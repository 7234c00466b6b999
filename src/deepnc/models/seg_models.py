"""Segmentation models whose last layer is a dense DNC head or, for the baseline, a 1x1 conv.

``fcn_<backbone>`` and ``deeplabv3_<backbone>`` follow torchvision's
``_SimpleSegmentationModel``: the backbone returns feature maps, a decoder (FCN's 3x3
conv block, or DeepLabV3's ASPP block) turns them into a D-channel embedding per pixel,
and the classifier maps it to C logits per pixel, upsampled to the input size. The
output is always a dict ``{"out": (B, C, H, W)}``, with ``"aux"`` too when the model has
an auxiliary head. With ``head="dnc"`` the classifier is a :class:`~deepnc.DNCHead`
(K = 10 sub-centroids per class by default) and the model has no learnt classifier
weights at all; with ``head="linear"`` it is the usual ``Conv2d(D, C, 1)``.

>>> model = create_segmentation_model("fcn_resnet20", num_classes=11, in_chans=1)
>>> model(torch.randn(2, 1, 64, 64))["out"].shape
torch.Size([2, 11, 64, 64])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from deepnc.models.registry import HEADS
from deepnc.models.seg_backbones import DenseBackbone, create_dense_backbone, list_dense_backbones
from deepnc.nn import defaults
from deepnc.nn.head import DNCHead
from deepnc.utils.suggest import did_you_mean

__all__ = [
    "DECODERS",
    "SegmentationModel",
    "create_segmentation_model",
    "list_segmentation_models",
]

DECODERS = ("fcn", "deeplabv3")


class SegmentationModel(nn.Module):
    """Backbone, decoder, classifier; optionally an auxiliary decoder and classifier.

    Args:
        backbone: returns ``{"aux": ..., "out": ...}`` feature maps (or the pair as a list).
        decoder: ``(B, out_channels, h, w) -> (B, D, h, w)``.
        classifier: ``(B, D, h, w) -> (B, C, h, w)``: a DNC head or a 1x1 conv.
        aux_decoder, aux_classifier: the same for the auxiliary map (training aid).
    """

    def __init__(
        self,
        backbone: nn.Module,
        decoder: nn.Module,
        classifier: nn.Module,
        aux_decoder: nn.Module | None = None,
        aux_classifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.classifier = classifier
        self.aux_decoder = aux_decoder
        self.aux_classifier = aux_classifier

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.backbone(images)
        if isinstance(maps, list | tuple):
            maps = dict(zip(("aux", "out"), maps, strict=True))
        return maps

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, D, h, w)``: what the classifier sees."""
        return self.decoder(self.features(images)["out"])

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, in_chans, H, W) -> {"out": (B, C, H, W)[, "aux": (B, C, H, W)]}`` logits."""
        size = images.shape[-2:]
        maps = self.features(images)
        logits = self.classifier(self.decoder(maps["out"]))
        result = {"out": F.interpolate(logits, size=size, mode="bilinear", align_corners=False)}
        if self.aux_classifier is not None:
            aux = self.aux_classifier(self.aux_decoder(maps["aux"]))
            result["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return result


def list_segmentation_models() -> list[str]:
    """Names accepted by :func:`create_segmentation_model`: ``<decoder>_<backbone>``."""
    return [f"{d}_{b}" for d in DECODERS for b in list_dense_backbones()]


def _fcn_decoder(in_channels: int, channels: int) -> nn.Sequential:
    """torchvision's ``FCNHead`` without its classifier: 3x3 conv, BN, ReLU, dropout."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Dropout(0.1),
    )


def _deeplab_decoder(in_channels: int, channels: int, rates: Sequence[int]) -> nn.Sequential:
    """DeepLabV3's head without its classifier: ASPP, then 3x3 conv, BN, ReLU."""
    return nn.Sequential(
        ASPP(in_channels, list(rates), channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


def _classifier(head: str, channels: int, num_classes: int, options: dict[str, Any]) -> nn.Module:
    if head == "dnc":
        return DNCHead(channels, num_classes, **(defaults.DENSE_HEAD | options))
    return nn.Conv2d(channels, num_classes, 1)


def create_segmentation_model(
    name: str,
    *,
    num_classes: int,
    head: str = "dnc",
    in_chans: int = 3,
    pretrained: bool = False,
    head_options: dict[str, Any] | None = None,
    aux: bool = False,
    decoder_channels: int | None = None,
    atrous_rates: Sequence[int] = (12, 24, 36),
) -> SegmentationModel:
    """Build ``<decoder>_<backbone>`` (``fcn_resnet20``, ``deeplabv3_efficientnet_lite0``, ...).

    Args:
        name: ``fcn_`` or ``deeplabv3_`` followed by a backbone of
            :func:`~deepnc.models.seg_backbones.list_dense_backbones`.
        num_classes: C, the background included.
        head: ``"dnc"`` or ``"linear"`` (a 1x1 conv, the baseline).
        in_chans: 1 for greyscale, 3 for RGB.
        pretrained: ImageNet backbone weights (offline only for ``efficientnet_lite0``).
        head_options: :class:`~deepnc.DNCHead` keywords (``dnc`` only); dense defaults
            ``num_subcentroids=10``, ``memory_size=0``.
        aux: add an FCN auxiliary head of the same kind on the backbone's earlier map.
        decoder_channels: D, the decoder's width (default: a quarter of the backbone's
            for FCN, as torchvision; 256 for DeepLabV3).
        atrous_rates: ASPP rates (DeepLabV3); torchvision's (12, 24, 36) suit large
            inputs, small feature maps want small rates such as (2, 4, 6).

    Raises:
        ValueError: an unknown name, head or option.
    """
    decoder_name, _, backbone_name = name.partition("_")
    known = backbone_name in list_dense_backbones() or backbone_name.startswith("timm:")
    if decoder_name not in DECODERS or not known:
        hint = did_you_mean(name, list_segmentation_models())
        raise ValueError(
            f"unknown segmentation model {name!r}: expected <decoder>_<backbone> with decoder "
            f"in {list(DECODERS)} and backbone in {list_dense_backbones()}.{hint}"
        )
    if head not in HEADS:
        raise ValueError(f"head must be one of ['dnc', 'linear'], got {head!r}")
    if head == "linear" and head_options:
        raise ValueError(f"head_options {sorted(head_options)} apply to the dnc head only")
    backbone: DenseBackbone = create_dense_backbone(
        backbone_name, in_chans=in_chans, pretrained=pretrained
    )
    options = dict(head_options or {})
    if decoder_name == "fcn":
        channels = decoder_channels or max(2, backbone.out_channels // 4)
        decoder = _fcn_decoder(backbone.out_channels, channels)
    else:
        channels = decoder_channels or 256
        decoder = _deeplab_decoder(backbone.out_channels, channels, atrous_rates)
    classifier = _classifier(head, channels, num_classes, options)
    aux_decoder = aux_classifier = None
    if aux:
        aux_channels = max(2, backbone.aux_channels // 4)
        aux_decoder = _fcn_decoder(backbone.aux_channels, aux_channels)
        aux_classifier = _classifier(head, aux_channels, num_classes, options)
    return SegmentationModel(backbone.module, decoder, classifier, aux_decoder, aux_classifier)
