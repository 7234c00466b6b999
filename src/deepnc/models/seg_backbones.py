"""Backbones that return feature maps for dense prediction: ``{"aux": ..., "out": ...}``.

Each backbone is the classification network of the same name with its classifier cut off
(torchvision's ``create_feature_extractor`` or timm's ``features_only``), so its
state-dict keys are the classification model's keys: a classification checkpoint's
backbone loads into it tensor for tensor (see :mod:`deepnc.models.transfer`).

============================  ==========  ===================================
name                          out stride  how
============================  ==========  ===================================
``resnet20/32/56``            4           CIFAR-style ResNet, no downsampling stem
``cifar_resnet18``            8           3x3 stem, no max-pool
``resnet18/34``               8           torchvision, stages 3-4 dilated (2, 4)
``resnet50/101``              8           torchvision ``replace_stride_with_dilation``
``mobilenet_v3_small/large``  16          torchvision ``dilated=True``
``efficientnet_lite0``        8           timm ``features_only``, shipped weights
``timm:<name>``               8           timm ``features_only(output_stride=8)``
============================  ==========  ===================================
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from deepnc.models.cifar_resnet import CifarResNet
from deepnc.models.efficientnet_lite import TIMM_NAME, efficientnet_lite0
from deepnc.models.registry import BUILT_IN_MODELS, adapt_stem

__all__ = ["DenseBackbone", "create_dense_backbone", "list_dense_backbones"]

_TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
_BOTTLENECK_RESNETS = ("resnet50", "resnet101")  # dilated as torchvision's FCN / DeepLabV3
_MOBILENETS = ("mobilenet_v3_small", "mobilenet_v3_large")


@dataclass
class DenseBackbone:
    """A feature-map network and what a decoder needs to know about it.

    Attributes:
        module: ``(B, in_chans, H, W) -> {"aux": (B, aux_channels, h', w'),
            "out": (B, out_channels, h, w)}`` (timm backbones return the pair as a list).
        out_channels, aux_channels: widths of the two maps.
        output_stride: input side / side of ``out``.
    """

    module: nn.Module
    out_channels: int
    aux_channels: int
    output_stride: int


def list_dense_backbones() -> list[str]:
    """Backbone names accepted by :func:`create_dense_backbone` (plus ``timm:<name>``)."""
    small = ["resnet20", "resnet32", "resnet56", "cifar_resnet18", "efficientnet_lite0"]
    return sorted([*small, *_TORCHVISION_RESNETS, *_MOBILENETS, "timm:<name>"])


def create_dense_backbone(
    name: str, *, in_chans: int = 3, pretrained: bool = False
) -> DenseBackbone:
    """The backbone ``name`` (see the module table) as a feature-map network.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    if name in ("resnet20", "resnet32", "resnet56"):
        model = BUILT_IN_MODELS[name](num_classes=1, in_chans=in_chans, pretrained=pretrained)
        assert isinstance(model, CifarResNet)
        blocks = len(model.layers) // 3
        taps = {f"layers.{2 * blocks - 1}": "aux", f"layers.{3 * blocks - 1}": "out"}
        return _extract(model, taps, output_stride=4)
    if name == "cifar_resnet18":
        model = BUILT_IN_MODELS[name](num_classes=1, in_chans=in_chans, pretrained=pretrained)
        return _extract(model, {"layer3": "aux", "layer4": "out"}, output_stride=8)
    if name in _TORCHVISION_RESNETS:
        weights = "DEFAULT" if pretrained else None  # downloads: needs the internet
        if name in _BOTTLENECK_RESNETS:  # output stride 8, as torchvision's FCN and DeepLabV3
            model = torchvision.models.get_model(
                name, weights=weights, replace_stride_with_dilation=[False, True, True]
            )
        else:  # basic blocks refuse dilation > 1: set it on their convolutions
            model = torchvision.models.get_model(name, weights=weights)
            _dilate(model.layer3, 2)
            _dilate(model.layer4, 4)
        if in_chans != 3:
            adapt_stem(model, in_chans)
        return _extract(model, {"layer3": "aux", "layer4": "out"}, output_stride=8)
    if name in _MOBILENETS:
        weights = "DEFAULT" if pretrained else None
        model = torchvision.models.get_model(name, weights=weights, dilated=True)
        if in_chans != 3:
            adapt_stem(model, in_chans)
        features = model.features
        stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
        stages.append(len(features) - 1)
        taps = {f"features.{stages[-4]}": "aux", f"features.{stages[-1]}": "out"}
        return _extract(model, taps, output_stride=16)
    if name == "efficientnet_lite0":
        trained = efficientnet_lite0(num_classes=1000, in_chans=in_chans, pretrained=pretrained)
        module = timm.create_model(
            TIMM_NAME, features_only=True, out_indices=(3, 4), output_stride=8, in_chans=in_chans
        )
        module.load_state_dict(_matching(trained.state_dict(), module), strict=True)
        return _timm_backbone(module, output_stride=8)
    if name.startswith("timm:"):
        module = timm.create_model(
            name[5:], features_only=True, output_stride=8, pretrained=pretrained, in_chans=in_chans
        )
        last = len(module.feature_info) - 1
        module = timm.create_model(
            name[5:],
            features_only=True,
            output_stride=8,
            pretrained=pretrained,
            in_chans=in_chans,
            out_indices=(last - 1, last),
        )
        return _timm_backbone(module, output_stride=8)
    raise ValueError(f"unknown segmentation backbone {name!r}; valid: {list_dense_backbones()}")


def _extract(model: nn.Module, taps: dict[str, str], output_stride: int) -> DenseBackbone:
    module = create_feature_extractor(model, return_nodes=taps)
    channels = {}
    for node, key in taps.items():
        stage = model.get_submodule(node)
        channels[key] = _out_channels(stage)
    return DenseBackbone(module, channels["out"], channels["aux"], output_stride)


def _timm_backbone(module: nn.Module, output_stride: int) -> DenseBackbone:
    aux_channels, out_channels = module.feature_info.channels()
    return DenseBackbone(module, out_channels, aux_channels, output_stride)


def _out_channels(stage: nn.Module) -> int:
    """Channels produced by a stage: those of its last BatchNorm (every backbone here ends
    its stages with one)."""
    norms = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise ValueError(f"cannot tell the output channels of {type(stage).__name__}")
    return norms[-1].num_features


def _dilate(stage: nn.Module, dilation: int) -> None:
    """Trade a stage's stride for dilation, keeping its weights (DeepLab's output stride 8)."""
    for module in stage.modules():
        if isinstance(module, nn.Conv2d):
            if module.stride != (1, 1):
                module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation = (dilation, dilation)
                module.padding = (dilation, dilation)


def _matching(state: dict, module: nn.Module) -> dict:
    wanted = module.state_dict()
    return {key: state[key] for key in wanted}
